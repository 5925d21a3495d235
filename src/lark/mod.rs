//! Lark client: app token, OAuth, VC reserves, bot messages. Filled in by the Lark client work.
