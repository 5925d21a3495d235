use super::*;

#[test]
fn dynamic_text_is_escaped() {
    let p = page("Hi <b>", "a & \"b\" <script>", Some("x'y"));
    assert!(p.contains("Hi &lt;b&gt;"));
    assert!(p.contains("a &amp; &quot;b&quot; &lt;script&gt;"));
    assert!(p.contains("x&#39;y"));
    assert!(!p.contains("<script>"));
}
