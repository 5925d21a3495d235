//! Reading answers from Salesforce and Lark within a size cap (design §3 rule 18): a
//! misbehaving or hostile upstream cannot make the service buffer an unbounded body.
//! The streaming transport has its own reader.

/// Largest Salesforce REST answer read (a query page of 2000 wide rows stays far below).
pub const SALESFORCE_BODY_CAP: usize = 32 * 1024 * 1024;

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

/// Reads `response`'s body, refusing one larger than `cap` bytes (by its declared length
/// at once, or as soon as the bytes read pass it).
pub async fn read_capped(
    mut response: reqwest::Response,
    cap: usize,
) -> Result<Vec<u8>, ReadError> {
    if response
        .content_length()
        .is_some_and(|len| len > cap as u64)
    {
        return Err(ReadError::TooLarge { cap });
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(ReadError::Transport)? {
        if body.len() + chunk.len() > cap {
            return Err(ReadError::TooLarge { cap });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

#[cfg(test)]
mod tests;
