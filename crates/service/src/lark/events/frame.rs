//! The `pbbp2.Frame` protobuf (proto2) that every message of the long connection carries,
//! written out by hand with `prost` derives (no `protoc` at build time).
//!
//! Field numbers and labels from the SDKs' generated code: larksuite/oapi-sdk-python
//! `lark_oapi/ws/pb/pbbp2_pb2.py` (its serialized descriptor) and larksuite/oapi-sdk-go
//! `ws/pbbp2.pb.go`. `SeqID`, `LogID`, `service`, `method` and a header's `key` and
//! `value` are `required`: they are always written, zero included, as a proto2 parser
//! (Python's `ParseFromString`) refuses a frame without them.
//!
//! Only the frame's shape and the answers the client sends live here; what a frame means
//! is decided by the connection.

use prost::Message;

/// `method` of a control frame (ping, pong): `FrameType.CONTROL` in `lark_oapi/ws/enum.py`.
pub(crate) const METHOD_CONTROL: i32 = 0;
/// `method` of a data frame (an event or a card action): `FrameType.DATA`.
pub(crate) const METHOD_DATA: i32 = 1;

// Header keys and values: `lark_oapi/ws/const.py` and `enum.py`, `ws/const.go`.

/// The message type: [`TYPE_EVENT`]/`card` on data frames, [`TYPE_PING`]/[`TYPE_PONG`]
/// on control frames.
pub(crate) const HEADER_TYPE: &str = "type";
/// One message's id, shared by its fragments.
pub(crate) const HEADER_MESSAGE_ID: &str = "message_id";
/// How many fragments the message was split into (1 when it was not).
pub(crate) const HEADER_SUM: &str = "sum";
/// This fragment's index, from 0.
pub(crate) const HEADER_SEQ: &str = "seq";
/// Lark's trace id (kept in the log to match Lark's support answers).
pub(crate) const HEADER_TRACE_ID: &str = "trace_id";
/// Added to an acknowledgement: how long the handling took, in milliseconds.
pub(crate) const HEADER_BIZ_RT: &str = "biz_rt";

/// A data frame carrying an event.
pub(crate) const TYPE_EVENT: &str = "event";
/// A control frame the client sends.
pub(crate) const TYPE_PING: &str = "ping";
/// The server's answer to a ping; its payload, when present, is a new `ClientConfig`.
pub(crate) const TYPE_PONG: &str = "pong";

/// `pbbp2.Header`.
#[derive(Clone, PartialEq, Message)]
pub(crate) struct Header {
    #[prost(string, required, tag = "1")]
    pub(crate) key: String,
    #[prost(string, required, tag = "2")]
    pub(crate) value: String,
}

/// `pbbp2.Frame`.
#[derive(Clone, PartialEq, Message)]
pub(crate) struct Frame {
    /// `SeqID`.
    #[prost(uint64, required, tag = "1")]
    pub(crate) seq_id: u64,
    /// `LogID`.
    #[prost(uint64, required, tag = "2")]
    pub(crate) log_id: u64,
    #[prost(int32, required, tag = "3")]
    pub(crate) service: i32,
    /// [`METHOD_CONTROL`] or [`METHOD_DATA`].
    #[prost(int32, required, tag = "4")]
    pub(crate) method: i32,
    #[prost(message, repeated, tag = "5")]
    pub(crate) headers: Vec<Header>,
    #[prost(string, optional, tag = "6")]
    pub(crate) payload_encoding: Option<String>,
    #[prost(string, optional, tag = "7")]
    pub(crate) payload_type: Option<String>,
    /// (prost adds `payload()`: the bytes, empty when absent.)
    #[prost(bytes = "vec", optional, tag = "8")]
    pub(crate) payload: Option<Vec<u8>>,
    /// `LogIDNew`.
    #[prost(string, optional, tag = "9")]
    pub(crate) log_id_new: Option<String>,
}

impl Frame {
    /// The ping the client sends every `PingInterval`: a control frame for the connection
    /// URL's `service_id`, SeqID and LogID 0, one header `type=ping`
    /// (`_new_ping_frame` in `lark_oapi/ws/client.py`, `NewPingFrame` in `ws/model.go`).
    pub(crate) fn ping(service_id: i32) -> Frame {
        Frame {
            seq_id: 0,
            log_id: 0,
            service: service_id,
            method: METHOD_CONTROL,
            headers: vec![Header {
                key: HEADER_TYPE.into(),
                value: TYPE_PING.into(),
            }],
            payload_encoding: None,
            payload_type: None,
            payload: None,
            log_id_new: None,
        }
    }

    /// The first value of header `key`, if any.
    pub(crate) fn header(&self, key: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|h| h.key == key)
            .map(|h| h.value.as_str())
    }

    /// The answer to a data frame: the same frame (SeqID, LogID, service, method, headers)
    /// with a `biz_rt` header added and the payload replaced by `{"code":<code>}` — 200
    /// once the event is recorded, 500 when it could not be (`_handle_data_frame` in
    /// `lark_oapi/ws/client.py`, `handleDataFrame` in `ws/client.go`).
    pub(crate) fn into_ack(mut self, code: u16, biz_rt_ms: u64) -> Frame {
        self.headers.push(Header {
            key: HEADER_BIZ_RT.into(),
            value: biz_rt_ms.to_string(),
        });
        self.payload = Some(format!("{{\"code\":{code}}}").into_bytes());
        self
    }

    /// The bytes of one WebSocket binary message.
    pub(crate) fn to_bytes(&self) -> Vec<u8> {
        self.encode_to_vec()
    }

    /// Parses one WebSocket binary message.
    pub(crate) fn from_bytes(bytes: &[u8]) -> Result<Frame, prost::DecodeError> {
        Frame::decode(bytes)
    }
}

#[cfg(test)]
mod tests;
