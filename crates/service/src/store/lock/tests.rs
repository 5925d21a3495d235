use super::*;

#[test]
fn a_second_holder_is_refused_with_the_first_ones_name_until_it_lets_go() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("sub/store.db");
    let first = StoreLock::acquire(&store, "run").unwrap();
    let err = StoreLock::acquire(&store, "run").unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains(&format!("pid {}", std::process::id())),
        "{text}"
    );
    assert!(text.contains("`run`"), "{text}");
    assert!(text.contains("started at"), "{text}");
    assert!(!StoreLock::is_free(&store));
    drop(first);
    assert!(StoreLock::is_free(&store));
    StoreLock::acquire(&store, "reconcile").unwrap();
}

#[cfg(unix)]
#[test]
fn the_lock_file_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store.db");
    let lock = StoreLock::acquire(&store, "run").unwrap();
    let mode = std::fs::metadata(lock.path()).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[cfg(unix)]
#[test]
fn a_lock_file_left_open_by_an_older_version_is_made_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store.db");
    let path = lock_path(&store);
    std::fs::write(&path, "").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let _lock = StoreLock::acquire(&store, "run").unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o7777, 0o600);
}
