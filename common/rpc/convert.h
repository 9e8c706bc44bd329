// Conversions between the engine's types and the eagle.v1 protocol, shared by the drafter and
// verifier adapters: status codes, sampling parameters, packed feature tensors, draft trees.
#ifndef EAGLE_COMMON_RPC_CONVERT_H_
#define EAGLE_COMMON_RPC_CONVERT_H_

#include <grpcpp/grpcpp.h>
#include <grpcpp/support/sync_stream.h>

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/eagle/draft_tree.h"
#include "common/generate.h"
#include "common/sampling.h"
#include "eagle/v1/common.pb.h"
#include "eagle/v1/drafter.pb.h"

namespace eagle::rpc {

grpc::Status ToGrpc(const absl::Status& s);
absl::Status FromGrpc(const grpc::Status& s);

SamplingParams FromProto(const v1::SamplingParams& p);
void ToProto(const SamplingParams& s, v1::SamplingParams* p);

// Packs rows x width floats as `dtype` (F16 when unspecified).
void PackFeatures(std::span<const float> data, int64_t rows, int64_t width,
                  v1::Features::DType dtype, v1::Features* out);
// Unpacks, checking dtype, shape [rows, width] against the data size and `width` if > 0.
absl::StatusOr<std::vector<float>> UnpackFeatures(const v1::Features& f, int64_t width);
// Bytes per element of a feature dtype (F16 when unspecified), 0 for an unknown one.
int FeatureBytes(v1::Features::DType dtype);

void ToProto(const DraftTree& t, v1::DraftTree* p);
DraftTree FromProto(const v1::DraftTree& p);

// A fresh request id (16 hex digits) for requests that come without one.
std::string NewRequestId();
// The request's id: `given` if set, else the x-request-id metadata (first 64 bytes), else new.
std::string RequestId(const grpc::ServerContext& ctx, const std::string& given);

// Streams each token (and its text) to `writer` as one Generate chunk; sets *client_gone and
// returns false (stop) once a write fails.
TokenCallback StreamTokens(grpc::ServerWriter<v1::GenerateResponse>* writer, bool* client_gone);
// The last Generate chunk: finish reason, usage, prefill and decode timings.
v1::GenerateResponse LastChunk(const GenerateResult& result);

// The most bytes of request metadata (HTTP/2 header list, counted as gRPC counts it: each
// entry's key and value lengths plus 32) a server accepts; a request over it gets
// RESOURCE_EXHAUSTED before any handler runs. gRPC's own default, set so it is stated and tested.
inline constexpr int kMaxMetadataBytes = 8 << 10;

// Server-side keepalive and limits shared by both services: a dead peer is detected within
// about 10 s (pings every 5 s, 5 s timeout), messages up to 8 MiB, metadata up to
// kMaxMetadataBytes.
void ConfigureServer(grpc::ServerBuilder& builder);
grpc::ChannelArguments ClientChannelArgs();

}  // namespace eagle::rpc

#endif  // EAGLE_COMMON_RPC_CONVERT_H_
