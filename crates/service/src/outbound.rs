//! Reading answers from Salesforce and Lark within a size cap (design §3 rule 18): a
//! misbehaving or hostile upstream cannot make the service buffer an unbounded body.
//!
//! Every response body the service reads goes through [`read_capped`], with the cap of
//! its kind of answer: Salesforce REST, the Salesforce token endpoint, the CometD
//! transport, the Lark Open API. Nothing else in the crate calls `.bytes()`, `.text()` or
//! `.json()` on a `reqwest::Response`.

/// Largest Salesforce REST answer read (a query page of 2000 wide rows stays far below).
pub const SALESFORCE_BODY_CAP: usize = 32 * 1024 * 1024;

/// Largest answer read from Salesforce's token endpoint (`/services/oauth2/token`): a
/// token response is a few hundred bytes of JSON, an error one a few dozen; 64 KiB leaves
/// room for an HTML error page from a proxy in front of it.
pub const SALESFORCE_TOKEN_BODY_CAP: usize = 64 * 1024;

/// Largest CometD answer read (one `/meta/connect` may carry many events). Salesforce's
/// own long-polling client caps "the maximum number of bytes of a HTTP response, which may
/// contain many Bayeux messages" at 1 MiB (`maxBufferSize` in forcedotcom/EMP-Connector,
/// `BayeuxParameters.java`); 8 MiB leaves that eight times over.
pub const STREAMING_BODY_CAP: usize = 8 * 1024 * 1024;

/// Largest Lark Open API answer read (tokens, user info, reserves: a few KiB each).
pub const LARK_BODY_CAP: usize = 2 * 1024 * 1024;

/// Why a body could not be read.
#[derive(Debug)]
pub enum ReadError {
    /// The body is larger than the cap; reading stopped there.
    TooLarge { cap: usize },
    /// The connection failed while reading.
    Transport(reqwest::Error),
}

impl ReadError {
    /// The text of an error that reports an oversized body.
    pub fn too_large_text(cap: usize) -> String {
        format!("response body larger than the {cap}-byte cap; not read")
    }
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadError::TooLarge { cap } => f.write_str(&ReadError::too_large_text(*cap)),
            ReadError::Transport(e) => write!(f, "reading the response failed: {e}"),
        }
    }
}

/// Reads `response`'s body, refusing one larger than `cap` bytes (by its declared length
/// at once, or as soon as the bytes read pass it). The buffer never holds more than `cap`
/// bytes, nor grows past it: the memory an answer can cost is the cap, not the body.
pub async fn read_capped(
    mut response: reqwest::Response,
    cap: usize,
) -> Result<Vec<u8>, ReadError> {
    let declared = response.content_length();
    if declared.is_some_and(|len| len > cap as u64) {
        return Err(ReadError::TooLarge { cap });
    }
    // A declared length is trusted for the first allocation only (it is within the cap);
    // the bytes that actually come are counted below all the same.
    let mut body = Vec::with_capacity(declared.map_or(0, |len| len as usize));
    while let Some(chunk) = response.chunk().await.map_err(ReadError::Transport)? {
        let needed = body.len() + chunk.len();
        if needed > cap {
            return Err(ReadError::TooLarge { cap });
        }
        if needed > body.capacity() {
            // Doubling, as `Vec` would, but never past the cap.
            let target = needed.max(body.capacity() * 2).min(cap);
            body.reserve_exact(target - body.len());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

#[cfg(test)]
mod tests;
