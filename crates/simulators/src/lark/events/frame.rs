//! The `pbbp2.Frame` of Lark's long connection, as hand-written `prost` structs (no protoc
//! at build time), and the few frames the simulator builds.
//!
//! Source: `pbbp2.proto` as compiled into the official SDKs — larksuite/oapi-sdk-python
//! `lark_oapi/ws/pb/pbbp2_pb2.py` (its serialized descriptor) and larksuite/oapi-sdk-go
//! `ws/pbbp2.pb.go`. It is **proto2** and `SeqID`, `LogID`, `service`, `method` and both
//! fields of a header are `required`: the Python SDK's parser refuses a frame that leaves
//! one out, so they are always written here, zero or not.
//!
//! Header keys and frame types: `lark_oapi/ws/const.py`, `ws/const.go` (`type`,
//! `message_id`, `sum`, `seq`, `trace_id`, `biz_rt`; method 0 control, 1 data; types
//! `ping`/`pong` on control frames, `event`/`card` on data frames).

/// One `key: value` header of a frame (`pbbp2.Header`).
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct Header {
    /// `key` (field 1, required).
    #[prost(string, required, tag = "1")]
    pub key: String,
    /// `value` (field 2, required).
    #[prost(string, required, tag = "2")]
    pub value: String,
}

/// One WebSocket message of the long connection (`pbbp2.Frame`), always sent binary.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Frame {
    /// `SeqID` (field 1, required).
    #[prost(uint64, required, tag = "1")]
    pub seq_id: u64,
    /// `LogID` (field 2, required).
    #[prost(uint64, required, tag = "2")]
    pub log_id: u64,
    /// `service` (field 3, required): the `service_id` of the connection URL.
    #[prost(int32, required, tag = "3")]
    pub service: i32,
    /// `method` (field 4, required): [`METHOD_CONTROL`] or [`METHOD_DATA`].
    #[prost(int32, required, tag = "4")]
    pub method: i32,
    /// `headers` (field 5).
    #[prost(message, repeated, tag = "5")]
    pub headers: Vec<Header>,
    /// `payload_encoding` (field 6).
    #[prost(string, optional, tag = "6")]
    pub payload_encoding: Option<String>,
    /// `payload_type` (field 7).
    #[prost(string, optional, tag = "7")]
    pub payload_type: Option<String>,
    /// `payload` (field 8).
    #[prost(bytes = "vec", optional, tag = "8")]
    pub payload: Option<Vec<u8>>,
    /// `LogIDNew` (field 9).
    #[prost(string, optional, tag = "9")]
    pub log_id_new: Option<String>,
}

/// `method` of a control frame (ping, pong).
pub const METHOD_CONTROL: i32 = 0;
/// `method` of a data frame (event, card, and the client's acknowledgement).
pub const METHOD_DATA: i32 = 1;

/// Header naming the frame's type.
pub const HEADER_TYPE: &str = "type";
/// Header: the message id, shared by every fragment of one message.
pub const HEADER_MESSAGE_ID: &str = "message_id";
/// Header: how many fragments the message has (1 when whole).
pub const HEADER_SUM: &str = "sum";
/// Header: this fragment's index, from 0.
pub const HEADER_SEQ: &str = "seq";
/// Header: the trace id.
pub const HEADER_TRACE_ID: &str = "trace_id";
/// Header the client adds to its acknowledgement: handling time in milliseconds.
pub const HEADER_BIZ_RT: &str = "biz_rt";

/// `type` of a client's ping.
pub const TYPE_PING: &str = "ping";
/// `type` of the server's answer to a ping.
pub const TYPE_PONG: &str = "pong";
/// `type` of an event data frame.
pub const TYPE_EVENT: &str = "event";

impl Frame {
    /// The value of header `key`, if present.
    pub fn header(&self, key: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|h| h.key == key)
            .map(|h| h.value.as_str())
    }

    /// A control frame with only a `type` header.
    pub fn control(service: i32, kind: &str, payload: Option<Vec<u8>>) -> Frame {
        Frame {
            seq_id: 0,
            log_id: 0,
            service,
            method: METHOD_CONTROL,
            headers: vec![header(HEADER_TYPE, kind)],
            payload_encoding: None,
            payload_type: None,
            payload,
            log_id_new: None,
        }
    }

    /// The payload as bytes (empty when absent).
    pub fn payload_bytes(&self) -> &[u8] {
        self.payload.as_deref().unwrap_or_default()
    }

    /// The encoded frame, as sent over the WebSocket.
    pub fn to_bytes(&self) -> Vec<u8> {
        prost::Message::encode_to_vec(self)
    }

    /// Decodes one WebSocket message.
    pub fn from_bytes(bytes: &[u8]) -> Result<Frame, prost::DecodeError> {
        prost::Message::decode(bytes)
    }
}

/// A header.
pub fn header(key: &str, value: &str) -> Header {
    Header {
        key: key.to_string(),
        value: value.to_string(),
    }
}
