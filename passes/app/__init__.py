"""The command-line app: ``python -m passes optimize|inspect|diff|list|targets``.

The app is the one place that ties the pass library (``passes/``) and the compilers (``backends/``)
together; neither imports the other.
"""
