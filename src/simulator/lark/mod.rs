//! Lark simulator (design §5). Filled in by the Lark simulator work.
