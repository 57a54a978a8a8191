// graphpress_run: runs a TVM 0.27 Relax library on the board it was compiled for.
//
//   graphpress_run LIBRARY.so [--out DIR] [--repeat N] [--warmup N] INPUT.npy...
//
// Loads LIBRARY.so, calls its "main" with the inputs (little-endian C-order .npy files, in the
// order of the model's graph inputs) on the CPU, and writes each output as DIR/output_<i>.npy.
// With --repeat N it then runs N more times and prints "latency_ms median=... min=... runs=N".
// Set TVM_NUM_THREADS to choose the number of threads.
//
// Build (on the board, or with a cross compiler):
//   g++ -std=c++17 -O2 graphpress_run.cc -I include -L lib -ltvm_runtime -ltvm_ffi \
//       -Wl,-rpath,'$ORIGIN' -o graphpress_run
// where include/ holds the tvm/ffi and dlpack headers of the apache-tvm-ffi wheel and lib/ the
// libtvm_runtime.so and libtvm_ffi.so of the apache-tvm / apache-tvm-ffi wheels for the board.
#include <tvm/ffi/container/array.h>
#include <tvm/ffi/container/tensor.h>
#include <tvm/ffi/dtype.h>
#include <tvm/ffi/extra/module.h>
#include <tvm/ffi/function.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace ffi = tvm::ffi;

namespace {

struct CpuAlloc {
  void AllocData(DLTensor* tensor) { tensor->data = std::malloc(ffi::GetDataSize(*tensor)); }
  void FreeData(DLTensor* tensor) { std::free(tensor->data); }
};

// numpy dtype descr (without the byte-order character) <-> DLPack dtype.
struct DtypeName {
  const char* descr;
  DLDataType dtype;
};
const DtypeName kDtypes[] = {
    {"f4", {kDLFloat, 32, 1}}, {"f2", {kDLFloat, 16, 1}}, {"f8", {kDLFloat, 64, 1}},
    {"i1", {kDLInt, 8, 1}},    {"i2", {kDLInt, 16, 1}},   {"i4", {kDLInt, 32, 1}},
    {"i8", {kDLInt, 64, 1}},   {"u1", {kDLUInt, 8, 1}},   {"u2", {kDLUInt, 16, 1}},
    {"b1", {kDLBool, 8, 1}},
};

DLDataType DtypeOf(const std::string& descr) {
  for (const auto& entry : kDtypes)
    if (descr == entry.descr) return entry.dtype;
  throw std::runtime_error("unsupported .npy dtype '" + descr + "'");
}

std::string DescrOf(DLDataType dtype) {
  for (const auto& entry : kDtypes)
    if (entry.dtype.code == dtype.code && entry.dtype.bits == dtype.bits) return entry.descr;
  throw std::runtime_error("cannot write dtype " + std::string(ffi::DLDataTypeToString(dtype)) + " as .npy");
}

std::string HeaderValue(const std::string& header, const std::string& key) {
  size_t at = header.find("'" + key + "'");
  if (at == std::string::npos) throw std::runtime_error("npy header lacks '" + key + "'");
  at = header.find(':', at) + 1;
  while (header[at] == ' ') ++at;
  size_t end = header[at] == '(' ? header.find(')', at) + 1
                                 : header.find_first_of(",}", header[at] == '\'' ? header.find('\'', at + 1) : at);
  return header.substr(at, end - at);
}

ffi::Tensor ReadNpy(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  if (!file) throw std::runtime_error("cannot open " + path);
  char magic[8];
  file.read(magic, 8);
  if (!file || std::memcmp(magic, "\x93NUMPY", 6) != 0) throw std::runtime_error(path + " is not a .npy file");
  uint32_t header_length = 0;
  unsigned char length_bytes[4] = {0, 0, 0, 0};
  file.read(reinterpret_cast<char*>(length_bytes), magic[6] == 1 ? 2 : 4);
  header_length = length_bytes[0] | (length_bytes[1] << 8) | (length_bytes[2] << 16) | (length_bytes[3] << 24);
  std::string header(header_length, '\0');
  file.read(&header[0], header_length);
  std::string descr = HeaderValue(header, "descr");
  if (HeaderValue(header, "fortran_order") != "False") throw std::runtime_error(path + ": Fortran order is not supported");
  if (descr.size() != 5 || descr[1] == '>') throw std::runtime_error(path + ": need a little-endian dtype, got " + descr);
  std::vector<int64_t> shape;
  std::string dims = HeaderValue(header, "shape");
  for (const char* p = dims.c_str(); *p;) {
    if (*p >= '0' && *p <= '9') {
      char* end;
      shape.push_back(std::strtoll(p, &end, 10));
      p = end;
    } else {
      ++p;
    }
  }
  ffi::Tensor tensor = ffi::Tensor::FromNDAlloc(CpuAlloc(), ffi::Shape(shape), DtypeOf(descr.substr(2, 2)),
                                                DLDevice{kDLCPU, 0});
  file.read(static_cast<char*>(tensor.data_ptr()), ffi::GetDataSize(tensor));
  if (!file) throw std::runtime_error(path + " is shorter than its header says");
  return tensor;
}

void WriteNpy(const std::string& path, const ffi::Tensor& tensor) {
  std::ostringstream header;
  header << "{'descr': '<" << DescrOf(tensor.dtype()) << "', 'fortran_order': False, 'shape': (";
  for (int i = 0; i < tensor.ndim(); ++i) header << tensor.size(i) << (tensor.ndim() == 1 || i + 1 < tensor.ndim() ? "," : "");
  header << "), }";
  std::string text = header.str();
  text.append(64 - (10 + text.size() + 1) % 64, ' ');
  text.push_back('\n');
  std::ofstream file(path, std::ios::binary);
  uint16_t length = static_cast<uint16_t>(text.size());
  file.write("\x93NUMPY\x01\x00", 8);
  file.put(static_cast<char>(length & 0xff)).put(static_cast<char>(length >> 8));
  file << text;
  file.write(static_cast<const char*>(tensor.data_ptr()), ffi::GetDataSize(tensor));
  if (!file) throw std::runtime_error("cannot write " + path);
}

void Flatten(const ffi::Any& value, std::vector<ffi::Tensor>* out) {
  if (auto tensor = value.try_cast<ffi::Tensor>()) {
    out->push_back(*tensor);
  } else if (auto items = value.try_cast<ffi::Array<ffi::Any>>()) {
    for (const ffi::Any& item : *items) Flatten(item, out);
  } else {
    throw std::runtime_error("main returned something that is neither a tensor nor a tuple");
  }
}

int Usage() {
  std::cerr << "usage: graphpress_run LIBRARY.so [--out DIR] [--repeat N] [--warmup N] INPUT.npy...\n";
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  std::string library, out_dir = ".";
  int repeat = 0, warmup = 1;
  std::vector<std::string> inputs;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if ((arg == "--out" || arg == "--repeat" || arg == "--warmup") && i + 1 < argc) {
      std::string value = argv[++i];
      if (arg == "--out") out_dir = value;
      else if (arg == "--repeat") repeat = std::atoi(value.c_str());
      else warmup = std::atoi(value.c_str());
    } else if (arg.rfind("--", 0) == 0) {
      return Usage();
    } else if (library.empty()) {
      library = arg;
    } else {
      inputs.push_back(arg);
    }
  }
  if (library.empty()) return Usage();
  if (library.find('/') == std::string::npos) library = "./" + library;  // dlopen searches no folder for "m.so"
  try {
    ffi::Module module = ffi::Module::LoadFromFile(library);
    ffi::Module vm = module->GetFunction("vm_load_executable").value()().cast<ffi::Module>();
    // (device type, id, allocator) for the compute device and the host; 2 = pooled allocator.
    vm->GetFunction("vm_initialization").value()(static_cast<int>(kDLCPU), 0, 2, static_cast<int>(kDLCPU), 0, 2);
    ffi::Function entry = vm->GetFunction("main").value();
    std::vector<ffi::Tensor> tensors;
    for (const auto& path : inputs) tensors.push_back(ReadNpy(path));
    std::vector<ffi::AnyView> args(tensors.begin(), tensors.end());
    auto call = [&] {
      ffi::Any result;
      entry.CallPacked(args.data(), static_cast<int32_t>(args.size()), &result);
      return result;
    };
    std::vector<ffi::Tensor> outputs;
    Flatten(call(), &outputs);
    for (size_t i = 0; i < outputs.size(); ++i) WriteNpy(out_dir + "/output_" + std::to_string(i) + ".npy", outputs[i]);
    if (repeat > 0) {
      for (int i = 0; i < warmup; ++i) call();
      std::vector<double> ms;
      for (int i = 0; i < repeat; ++i) {
        auto start = std::chrono::steady_clock::now();
        call();
        ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count());
      }
      std::sort(ms.begin(), ms.end());
      std::printf("latency_ms median=%.4f min=%.4f runs=%d\n", ms[ms.size() / 2], ms.front(), repeat);
    }
    std::printf("outputs=%zu\n", outputs.size());
  } catch (const std::exception& error) {
    std::cerr << "graphpress_run: " << error.what() << "\n";
    return 1;
  }
  return 0;
}
