"""Test subjects and evaluation data for graphpress.

- ``builders`` (CLI: ``python -m models.build``): deterministic ResNet-18/50, MobileNetV2, VGG-16 and a
  small Transformer encoder with random weights.
- ``zoo``: trained models shipped inside pip packages (PP-OCR in ``rapidocr-onnxruntime``, the
  ``onnx`` wheel's ``light_*`` models).
- ``ocr_data`` (with ``ocr_render``, ``ocr_preprocess``, ``ocr_metrics``): rendered text images with
  exact ground truth and the task metrics for the PP-OCR recognizer, detector and classifier.
"""
