from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor
METHOD_ALTER_TOPIC_CONFIG: Method
METHOD_CREATE_ACLS: Method
METHOD_CREATE_PARTITIONS: Method
METHOD_CREATE_TOPIC: Method
METHOD_DELETE_ACLS: Method
METHOD_DELETE_TOPIC: Method
METHOD_DESCRIBE_TOPIC: Method
METHOD_FETCH: Method
METHOD_GET_METADATA: Method
METHOD_HANDSHAKE: Method
METHOD_INIT_PRODUCER_ID: Method
METHOD_LIST_ACLS: Method
METHOD_LIST_OFFSETS: Method
METHOD_LIST_TOPICS: Method
METHOD_PRODUCE: Method
METHOD_SUBSCRIBE: Method
METHOD_UNSPECIFIED: Method
PROTOCOL_VERSION_1: ProtocolVersion
PROTOCOL_VERSION_UNSPECIFIED: ProtocolVersion

class HandshakeRequest(_message.Message):
    __slots__ = ["client_id", "max_frame_bytes", "protocol_version"]
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    MAX_FRAME_BYTES_FIELD_NUMBER: _ClassVar[int]
    PROTOCOL_VERSION_FIELD_NUMBER: _ClassVar[int]
    client_id: str
    max_frame_bytes: int
    protocol_version: int
    def __init__(self, protocol_version: _Optional[int] = ..., client_id: _Optional[str] = ..., max_frame_bytes: _Optional[int] = ...) -> None: ...

class HandshakeResponse(_message.Message):
    __slots__ = ["cluster_id", "max_batch_bytes", "max_frame_bytes", "max_in_flight_bytes", "node_id", "principal", "protocol_version"]
    CLUSTER_ID_FIELD_NUMBER: _ClassVar[int]
    MAX_BATCH_BYTES_FIELD_NUMBER: _ClassVar[int]
    MAX_FRAME_BYTES_FIELD_NUMBER: _ClassVar[int]
    MAX_IN_FLIGHT_BYTES_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    PRINCIPAL_FIELD_NUMBER: _ClassVar[int]
    PROTOCOL_VERSION_FIELD_NUMBER: _ClassVar[int]
    cluster_id: str
    max_batch_bytes: int
    max_frame_bytes: int
    max_in_flight_bytes: int
    node_id: int
    principal: str
    protocol_version: int
    def __init__(self, protocol_version: _Optional[int] = ..., node_id: _Optional[int] = ..., cluster_id: _Optional[str] = ..., max_frame_bytes: _Optional[int] = ..., max_batch_bytes: _Optional[int] = ..., max_in_flight_bytes: _Optional[int] = ..., principal: _Optional[str] = ...) -> None: ...

class Method(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = []

class ProtocolVersion(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = []
