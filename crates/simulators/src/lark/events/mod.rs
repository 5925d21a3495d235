//! Lark's event delivery over the **long connection** (design §4, rule 28; §5), as the
//! official SDKs' `ws` clients see it: the bootstrap `POST /callback/ws/endpoint`, then
//! one WebSocket per client speaking binary `pbbp2.Frame`s — ping/pong control frames,
//! event data frames (fragmented past a size), acknowledgements, redelivery of what was
//! not acknowledged, at most 50 connections per app, each event to one of them.
//!
//! Owns: the connections, the events raised and their delivery schedule, the acks
//! received, and the knobs tests turn ([`LongConnection`]). It must not know what an
//! event means: the meeting life ([`super::meetings`]) builds the payloads and raises
//! them here. It never touches the Open API state (reserves, users).
//!
//! Sources: larksuite/oapi-sdk-python `lark_oapi/ws/client.py`, `const.py`, `model.py`,
//! `pb/pbbp2_pb2.py`; larksuite/oapi-sdk-go `ws/client.go`, `const.go`, `model.go`;
//! larksuite/node-sdk `ws-client/index.ts`; the Feishu pages mirrored in
//! wxkingstar/doc-hub-mcp `feishu/003-服务端API/事件与回调/事件订阅/订阅流程/步骤一：选择订阅方式/
//! 使用长连接接收事件.md` (3 s to handle an event or it is pushed again, 50 connections per
//! app, each message to one random client) and `将事件发送至开发者服务器.md` (the retry
//! schedule 15 s, 5 min, 1 h, 6 h).

pub mod frame;
mod hub;
mod socket;

pub(super) use hub::Stopper;
pub use hub::{ClientConfig, EventRecord, EventStats, LongConnection, SimAck};
pub(super) use socket::{endpoint, websocket};

use std::time::Duration;

/// Path of the bootstrap endpoint (not under `/open-apis`; no Authorization header).
pub const ENDPOINT_PATH: &str = "/callback/ws/endpoint";
/// Path of the WebSocket the bootstrap URL points at.
pub const SOCKET_PATH: &str = "/ws/v2";
/// Connections one app may hold at once ("每个应用最多建立 50 个连接").
pub const MAX_CONNECTIONS: usize = 50;
/// Delays between consecutive pushes of an event that is not acknowledged with 200, as
/// design §4 states them: again after 3 s (the handling deadline), then 15 s, 5 min,
/// 1 h, 6 h; after the last one the event is given up. Scaled by
/// [`LongConnection::scale_retry_schedule`] in tests.
///
/// The Feishu page (`事件订阅/订阅流程/步骤三：接收事件.md`, also `事件概述.md`) words it as
/// "not answered within 3 s → pushed again at intervals of 15 s, 5 min, 1 h, 6 h, at most
/// 4 retries", which reads as a first redelivery some 18 s after the push and one retry
/// fewer; [`LongConnection::set_retry_delays`] runs that reading when a test needs it.
pub const RETRY_DELAYS: [Duration; 5] = [
    Duration::from_secs(3),
    Duration::from_secs(15),
    Duration::from_secs(300),
    Duration::from_secs(3600),
    Duration::from_secs(6 * 3600),
];
/// Largest payload sent in one frame; a larger event goes in `sum` fragments. Lark does
/// not document its own size, so this is a sensible value well above a VC event (about
/// 1.5 KB); tests lower it with [`LongConnection::set_fragment_size`].
pub const DEFAULT_FRAGMENT_SIZE: usize = 64 * 1024;

/// Bootstrap `code`: success.
pub const CODE_OK: i64 = 0;
/// Bootstrap `code`: "system busy" (retryable in every SDK).
pub const CODE_SYSTEM_BUSY: i64 = 1;
/// Bootstrap `code`: internal error (retryable in every SDK).
pub const CODE_INTERNAL_ERROR: i64 = 1_000_040_343;
/// Bootstrap `code`: App ID or App Secret empty (`NO_CREDENTIAL` in `lark_oapi/ws/const.py`).
pub const CODE_NO_CREDENTIAL: i64 = 1_000_040_344;
/// Bootstrap `code`: App ID or App Secret wrong. Not named by the Python or Go SDK (which
/// treat every other code as final); the code the real endpoint answers for forged
/// credentials, as reported by its users and mapped by node-sdk builds
/// ("the App ID or App Secret is invalid").
pub const CODE_INVALID_CREDENTIAL: i64 = 1_000_040_345;
/// Handshake refusal: `Handshake-Status` of an authentication failure (`AUTH_FAILED`).
pub const HANDSHAKE_AUTH_FAILED: i64 = 514;
/// Handshake refusal: `Handshake-Autherrcode` when the app has too many connections
/// (`EXCEED_CONN_LIMIT`, final in both SDKs).
pub const AUTH_EXCEED_CONN_LIMIT: i64 = 1_000_040_350;

#[cfg(test)]
mod tests;
