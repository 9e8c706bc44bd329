// The NVIDIA GPU backend (built with -DEAGLE_WITH_CUDA=ON; plain C++ header, no CUDA types).
//
// What it holds: the target's weights dequantized to f32 in device memory (uploaded from the
// CPU backend's host copy, which stays for the draft head), each sequence's KV store in device
// memory, and per-pass device workspaces reused across passes. What crosses the bus in a pass:
// the plan (token ids, positions, KV slots: a few bytes per row) to the device; the logits of
// the rows that want them, the requested features, and for KeepPath only the path's indices.
//
// Every kernel is batch invariant: RMSNorm reduces one row in one block in a fixed order; the
// matrix product computes each output element in one warp, over k in a fixed order, whatever
// the number of rows (no split-K, no shape-dependent library choice: cuBLAS is not used); the
// attention of a row runs in one block over its visible slots in slot order. So on one GPU a
// token's logits do not depend on what else is in the pass, and speculative output equals the
// GPU's own vanilla output bit for bit at T = 0. It is not bit-identical to the CPU backend
// (different kernels and summation orders); tests compare it to the CPU f32 path by relative
// error and require the same greedy tokens on the shipped prompts.
#ifndef EAGLE_COMMON_CUDA_CUDA_BACKEND_H_
#define EAGLE_COMMON_CUDA_CUDA_BACKEND_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "common/model/backend.h"
#include "common/model/cpu_backend.h"

namespace eagle {

// True when this build has the CUDA backend.
bool CudaBuilt();
// Usable CUDA devices (0 without the CUDA backend, a driver or a device).
int CudaDeviceCount();
// "NVIDIA H200, 139 GiB, compute 9.0" for device `index`, or why there is none.
std::string CudaDeviceSummary(int index);

// Device memory bandwidth of device `index`, measured as a 1 GiB device-to-device copy (bytes
// read plus bytes written over the time), GB/s.
absl::StatusOr<double> CudaCopyBandwidthGBs(int index);

// The f32 FMA rate of device `index` (CUDA cores, no tensor cores), measured, GFLOP/s.
absl::StatusOr<double> CudaFmaPeakGflops(int index);

// The backend on device `index`, with the weights of `host` uploaded. UNIMPLEMENTED in a build
// without CUDA; FAILED_PRECONDITION when the device is missing; RESOURCE_EXHAUSTED when the
// weights do not fit.
absl::StatusOr<std::unique_ptr<ModelBackend>> MakeCudaBackend(const CpuBackend& host, int index);

}  // namespace eagle

#endif  // EAGLE_COMMON_CUDA_CUDA_BACKEND_H_
