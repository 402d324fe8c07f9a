"""DatasetService's protobuf messages and gRPC stubs, generated from connector/spec/dataset_service.proto
(see :mod:`connector.grpcapi.generate`)."""
