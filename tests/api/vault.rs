//! The vault reads what the Node-era plan wrote (16-byte IVs) and Node reads what we
//! write (12-byte IVs): tokens survive the move from the original TypeScript plan.

use std::io::Write;
use std::process::{Command, Stdio};

use lark_vc_bridge::tokens::Vault;
use serde_json::Value;

fn vectors() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fixtures/vault/node-vectors.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn node_written_tokens_decrypt() {
    let v = vectors();
    let vault = Vault::from_hex(v["key_hex"].as_str().unwrap(), &[]).unwrap();
    let list = v["vectors"].as_array().unwrap();
    assert!(list.len() >= 3);
    for vector in list {
        let ciphertext = vector["ciphertext"].as_str().unwrap();
        assert_eq!(
            ciphertext.split(':').next().unwrap().len(),
            32,
            "16-byte IV"
        );
        assert_eq!(
            vault.decrypt(ciphertext).unwrap(),
            vector["plaintext"].as_str().unwrap()
        );
    }
}

#[test]
fn node_decrypts_what_we_write() {
    if Command::new("node").arg("--version").output().is_err() {
        println!("SKIPPED node_decrypts_what_we_write: `node` is not installed on this machine");
        return;
    }
    let key = vectors()["key_hex"].as_str().unwrap().to_string();
    let vault = Vault::from_hex(&key, &[]).unwrap();
    for plaintext in ["u-access-token-ü-✓", "ur-refresh", ""] {
        let ciphertext = vault.encrypt(plaintext);
        let mut child = Command::new("node")
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/fixtures/vault/decrypt.js"
            ))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let input = serde_json::json!({ "key_hex": key, "ciphertext": ciphertext });
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.to_string().as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "node failed on {ciphertext}");
        assert_eq!(String::from_utf8(out.stdout).unwrap(), plaintext);
    }
}
