//! The small HTML pages a trainer sees after clicking a connect link. Every dynamic
//! value is HTML-escaped; no page ever shows a token or an internal error chain.

/// Escapes text for HTML element content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The one stylesheet of every page, inline; the Content-Security-Policy allows exactly
/// this text (by its hash) and nothing else.
pub const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:36rem;margin:4rem auto;padding:0 1rem;color:#1f2329}h1{font-size:1.4rem}.hint{color:#646a73}";

/// `Content-Security-Policy` of every response: nothing may load, run, frame the page or
/// be submitted from it; only [`STYLE`] applies.
pub fn content_security_policy() -> String {
    use base64::Engine;
    use sha2::Digest;
    let hash = base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(STYLE));
    format!(
        "default-src 'none'; style-src 'sha256-{hash}'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )
}

/// A complete page with a title, a message and an optional hint, all plain text.
pub fn page(title: &str, message: &str, hint: Option<&str>) -> String {
    let hint = hint
        .map(|h| format!("<p class=\"hint\">{}</p>", escape(h)))
        .unwrap_or_default();
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>{title} · Lark meetings for training</title>\
<style>{STYLE}</style></head>\
<body><h1>{title}</h1><p>{message}</p>{hint}</body></html>\n",
        title = escape(title),
        message = escape(message),
    )
}

#[cfg(test)]
mod tests;
