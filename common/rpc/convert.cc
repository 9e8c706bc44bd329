#include "common/rpc/convert.h"

#include <cstring>
#include <random>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/dtype.h"

namespace eagle::rpc {

grpc::Status ToGrpc(const absl::Status& s) {
  if (s.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(s.code()), std::string(s.message()));
}

absl::Status FromGrpc(const grpc::Status& s) {
  if (s.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(s.error_code()), s.error_message());
}

SamplingParams FromProto(const v1::SamplingParams& p) {
  SamplingParams s;
  s.temperature = p.temperature();
  s.top_k = p.top_k();
  s.top_p = p.top_p() == 0 ? 1.0f : p.top_p();
  s.seed = p.seed();
  return s;
}

void ToProto(const SamplingParams& s, v1::SamplingParams* p) {
  p->set_temperature(s.temperature);
  p->set_top_k(s.top_k);
  p->set_top_p(s.top_p);
  p->set_seed(s.seed);
}

int FeatureBytes(v1::Features::DType dtype) {
  switch (dtype) {
    case v1::Features::F32:
      return 4;
    case v1::Features::DTYPE_UNSPECIFIED:
    case v1::Features::F16:
    case v1::Features::BF16:
      return 2;
    default:
      return 0;
  }
}

void PackFeatures(std::span<const float> data, int64_t rows, int64_t width,
                  v1::Features::DType dtype, v1::Features* out) {
  if (dtype == v1::Features::DTYPE_UNSPECIFIED) dtype = v1::Features::F16;
  out->set_dtype(dtype);
  out->clear_shape();
  out->add_shape(rows);
  out->add_shape(width);
  const int64_t n = rows * width;
  std::string* bytes = out->mutable_data();
  bytes->resize(n * FeatureBytes(dtype));
  if (dtype == v1::Features::F32) {
    std::memcpy(bytes->data(), data.data(), n * sizeof(float));
    return;
  }
  auto* dst = reinterpret_cast<uint16_t*>(bytes->data());
  for (int64_t i = 0; i < n; ++i) {
    dst[i] = dtype == v1::Features::F16 ? FloatToHalf(data[i]) : FloatToBf16(data[i]);
  }
}

absl::StatusOr<std::vector<float>> UnpackFeatures(const v1::Features& f, int64_t width) {
  const int eb = FeatureBytes(f.dtype());
  if (eb == 0 || f.dtype() == v1::Features::DTYPE_UNSPECIFIED) {
    return absl::InvalidArgumentError(absl::StrCat("features: unknown dtype ", f.dtype()));
  }
  if (f.shape_size() != 2 || f.shape(0) < 0 || f.shape(1) <= 0) {
    return absl::InvalidArgumentError("features: shape must be [rows, width]");
  }
  if (width > 0 && f.shape(1) != width) {
    return absl::InvalidArgumentError(
        absl::StrCat("features: width ", f.shape(1), ", expected ", width));
  }
  const int64_t n = f.shape(0) * f.shape(1);
  if (static_cast<int64_t>(f.data().size()) != n * eb) {
    return absl::InvalidArgumentError(absl::StrCat(
        "features: ", f.data().size(), " bytes for shape [", f.shape(0), ", ", f.shape(1), "]"));
  }
  std::vector<float> out(n);
  if (f.dtype() == v1::Features::F32) {
    std::memcpy(out.data(), f.data().data(), n * sizeof(float));
    return out;
  }
  const char* src = f.data().data();
  for (int64_t i = 0; i < n; ++i) {
    uint16_t h;  // the bytes field's buffer carries no alignment promise
    std::memcpy(&h, src + 2 * i, sizeof h);
    out[i] = f.dtype() == v1::Features::F16 ? HalfToFloat(h) : Bf16ToFloat(h);
  }
  return out;
}

void ToProto(const DraftTree& t, v1::DraftTree* p) {
  p->mutable_tokens()->Assign(t.tokens.begin(), t.tokens.end());
  p->mutable_parents()->Assign(t.parents.begin(), t.parents.end());
}

DraftTree FromProto(const v1::DraftTree& p) {
  DraftTree t;
  t.tokens.assign(p.tokens().begin(), p.tokens().end());
  t.parents.assign(p.parents().begin(), p.parents().end());
  return t;
}

std::string NewRequestId() {
  static thread_local std::mt19937_64 rng(std::random_device{}());
  return absl::StrFormat("%016x", rng());
}

std::string RequestId(const grpc::ServerContext& ctx, const std::string& given) {
  if (!given.empty()) return given;
  auto it = ctx.client_metadata().find("x-request-id");
  if (it != ctx.client_metadata().end()) {
    return std::string(it->second.data(), std::min<size_t>(it->second.size(), 64));
  }
  return NewRequestId();
}

TokenCallback StreamTokens(grpc::ServerWriter<v1::GenerateResponse>* writer, bool* client_gone) {
  return [writer, client_gone](int32_t id, const std::string& text) {
    v1::GenerateResponse chunk;
    if (id >= 0) chunk.add_token_ids(id);
    chunk.set_text(text);
    if (!writer->Write(chunk)) *client_gone = true;
    return !*client_gone;
  };
}

v1::GenerateResponse LastChunk(const GenerateResult& r) {
  v1::GenerateResponse last;
  last.set_finish_reason(r.finish == FinishReason::kLength ? v1::LENGTH
                         : r.finish == FinishReason::kEos  ? v1::EOS
                                                           : v1::STOP);
  last.mutable_usage()->set_prompt_tokens(r.prompt_tokens);
  last.mutable_usage()->set_completion_tokens(static_cast<int32_t>(r.token_ids.size()));
  last.mutable_timings()->set_prefill_seconds(r.prefill_seconds);
  last.mutable_timings()->set_decode_seconds(r.decode_seconds);
  return last;
}

void ConfigureServer(grpc::ServerBuilder& builder) {
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS, 5000);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 5000);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  // Ping policy matched to ClientChannelArgs (keepalive every 5 s): pings closer than 4 s apart
  // while the server writes nothing are strikes, and the sixth strike gets a GOAWAY
  // (ENHANCE_YOUR_CALM, "too_many_pings"), so a misconfigured or abusive client cannot make the
  // server answer pings without limit. Our clients' keepalive pings are >= 5 s apart; BDP pings
  // follow data the server wrote, which resets the count. Other clients need keepalive >= 4 s.
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 4000);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MAX_PING_STRIKES, 5);
  builder.SetMaxReceiveMessageSize(8 << 20);
  builder.SetMaxSendMessageSize(8 << 20);
  builder.AddChannelArgument(GRPC_ARG_MAX_METADATA_SIZE, kMaxMetadataBytes);
}

grpc::ChannelArguments ClientChannelArgs() {
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 5000);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 5000);
  args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  args.SetInt(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
  args.SetMaxReceiveMessageSize(8 << 20);
  args.SetMaxSendMessageSize(8 << 20);
  return args;
}

}  // namespace eagle::rpc
