// The CUDA backend's entry points in a build without CUDA (-DEAGLE_WITH_CUDA=OFF): no device,
// and a precise error for anyone who asks for one.
#include "common/cuda/cuda_backend.h"

namespace eagle {

bool CudaBuilt() { return false; }
int CudaDeviceCount() { return 0; }
std::string CudaDeviceSummary(int) { return "this build has no CUDA backend"; }

absl::StatusOr<double> CudaCopyBandwidthGBs(int) {
  return absl::UnimplementedError("this build has no CUDA backend");
}

absl::StatusOr<double> CudaFmaPeakGflops(int) {
  return absl::UnimplementedError("this build has no CUDA backend");
}

absl::StatusOr<std::unique_ptr<ModelBackend>> MakeCudaBackend(const CpuBackend&, int) {
  return absl::UnimplementedError(
      "this build has no CUDA backend: configure with -DEAGLE_WITH_CUDA=ON (CUDA Toolkit 12+)");
}

}  // namespace eagle
