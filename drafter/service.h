// gRPC adapter of the drafter: the client-facing eagle.v1.Drafter service over the shared
// generation path (drafter/generation.h).
#ifndef EAGLE_DRAFTER_SERVICE_H_
#define EAGLE_DRAFTER_SERVICE_H_

#include "drafter/generation.h"
#include "eagle/v1/drafter.grpc.pb.h"

namespace eagle::drafter {

class DrafterService final : public v1::Drafter::Service {
 public:
  explicit DrafterService(Generations* generations) : generations_(generations) {}
  grpc::Status Generate(grpc::ServerContext* ctx, const v1::GenerateRequest* req,
                        grpc::ServerWriter<v1::GenerateResponse>* writer) override;

 private:
  grpc::Status Run(grpc::ServerContext* ctx, const v1::GenerateRequest* req,
                   grpc::ServerWriter<v1::GenerateResponse>* writer);
  Generations* generations_;
};

}  // namespace eagle::drafter

#endif  // EAGLE_DRAFTER_SERVICE_H_
