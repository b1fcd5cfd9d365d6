"""gRPC transport: thin servicers translating protobuf to domain calls and errors to Status."""
