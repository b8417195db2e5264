//! Reading bad record files, quarantine, temp-file cleanup, permissions and
//! log rotation, on real files.

mod common;

use std::collections::HashSet;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use common::{read_record, sample_record};
use statefile::{
    Error, ProjectPaths, ensure_dir, project_hashes, quarantine, read_json,
    remove_stale_temp_files, write_atomic, write_private,
};

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn project(root: &Path) -> ProjectPaths {
    let paths = ProjectPaths::new(root, "0123456789abcdef0123456789abcdef");
    ensure_dir(&paths.dir).unwrap();
    paths
}

fn valid_json() -> Vec<u8> {
    serde_json::to_vec_pretty(&sample_record(7, 64)).unwrap()
}

fn with_schema_version(version: serde_json::Value) -> Vec<u8> {
    let mut value = serde_json::to_value(sample_record(7, 64)).unwrap();
    value["schemaVersion"] = version;
    serde_json::to_vec(&value).unwrap()
}

fn without_field(field: &str) -> Vec<u8> {
    let mut value = serde_json::to_value(sample_record(7, 64)).unwrap();
    value.as_object_mut().unwrap().remove(field);
    serde_json::to_vec(&value).unwrap()
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Expect {
    Empty,
    Corrupt,
    WrongShape,
    Future(u64),
}

fn corrupt_variants() -> Vec<(&'static str, Vec<u8>, Expect)> {
    let valid = valid_json();
    vec![
        ("empty", Vec::new(), Expect::Empty),
        ("whitespace only", b" \n\t\n".to_vec(), Expect::Empty),
        (
            "truncated at half",
            valid[..valid.len() / 2].to_vec(),
            Expect::Corrupt,
        ),
        (
            "truncated by one byte",
            valid[..valid.len() - 1].to_vec(),
            Expect::Corrupt,
        ),
        ("not JSON", b"hello, world\n".to_vec(), Expect::Corrupt),
        (
            "binary garbage",
            vec![0xff, 0xfe, 0x00, 0x01, 0x80],
            Expect::Corrupt,
        ),
        (
            "JSON with trailing garbage",
            [valid.clone(), b"}x".to_vec()].concat(),
            Expect::Corrupt,
        ),
        ("an array", b"[1, 2, 3]".to_vec(), Expect::WrongShape),
        ("a number", b"42".to_vec(), Expect::WrongShape),
        ("null", b"null".to_vec(), Expect::WrongShape),
        (
            "missing schemaVersion",
            without_field("schemaVersion"),
            Expect::WrongShape,
        ),
        (
            "schemaVersion as a string",
            with_schema_version("1".into()),
            Expect::WrongShape,
        ),
        (
            "schemaVersion zero",
            with_schema_version(0.into()),
            Expect::WrongShape,
        ),
        (
            "schemaVersion negative",
            with_schema_version((-1).into()),
            Expect::WrongShape,
        ),
        ("missing pid", without_field("pid"), Expect::WrongShape),
        (
            "mistyped pid",
            br#"{"schemaVersion":1,"pid":"nope"}"#.to_vec(),
            Expect::WrongShape,
        ),
        (
            "unknown status",
            String::from_utf8(valid.clone())
                .unwrap()
                .replace("\"running\"", "\"exploded\"")
                .into_bytes(),
            Expect::WrongShape,
        ),
        (
            "future schemaVersion",
            with_schema_version(2.into()),
            Expect::Future(2),
        ),
        (
            "future schemaVersion, other shape",
            br#"{"schemaVersion": 99, "servers": []}"#.to_vec(),
            Expect::Future(99),
        ),
    ]
}

fn matches_expectation(err: &Error, expect: Expect) -> bool {
    match (err, expect) {
        (Error::Empty { .. }, Expect::Empty)
        | (Error::Corrupt { .. }, Expect::Corrupt)
        | (Error::WrongShape { .. }, Expect::WrongShape) => true,
        (
            Error::FutureVersion {
                found, supported, ..
            },
            Expect::Future(version),
        ) => *found == version && *supported == common::SCHEMA_VERSION,
        _ => false,
    }
}

#[test]
fn every_corrupt_variant_gives_its_error_and_quarantine_keeps_the_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let paths = project(dir.path());
    let mut quarantined = HashSet::new();
    for (name, bytes, expect) in corrupt_variants() {
        fs::write(&paths.record, &bytes).unwrap();
        let err = read_record(&paths.record).expect_err(name);
        assert!(matches_expectation(&err, expect), "{name}: got {err:?}");
        assert!(err.is_corrupt(), "{name}");
        assert_eq!(err.path(), Some(paths.record.as_path()), "{name}");
        let message = err.to_string();
        assert!(
            message.contains(&paths.record.display().to_string()),
            "{name}: message lacks the path: {message}"
        );
        if expect == Expect::Corrupt && name.starts_with("truncated") {
            assert!(message.contains("truncated"), "{name}: {message}");
        }

        let moved = quarantine(&paths.record).unwrap();
        assert_eq!(moved.parent(), Some(paths.dir.as_path()));
        let moved_name = moved.file_name().unwrap().to_str().unwrap();
        assert!(
            moved_name.starts_with("server.json.corrupt-"),
            "{moved_name}"
        );
        assert_eq!(fs::read(&moved).unwrap(), bytes, "{name}: bytes not kept");
        assert!(!paths.record.exists(), "{name}: still in place");
        assert!(read_record(&paths.record).unwrap().is_none());
        assert!(quarantined.insert(moved), "{name}: quarantine name reused");
    }
    // Every variant is still there, side by side, in quarantine.
    let on_disk = fs::read_dir(&paths.dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_str()
                .unwrap()
                .starts_with("server.json.corrupt-")
        })
        .count();
    assert_eq!(on_disk, corrupt_variants().len());
}

#[test]
fn quarantine_twice_in_the_same_second_gives_two_names() {
    let dir = tempfile::tempdir().unwrap();
    let paths = project(dir.path());
    let mut names = Vec::new();
    for i in 0..20 {
        fs::write(&paths.record, format!("garbage {i}")).unwrap();
        names.push(quarantine(&paths.record).unwrap());
    }
    let distinct: HashSet<&PathBuf> = names.iter().collect();
    assert_eq!(distinct.len(), names.len());
    for (i, name) in names.iter().enumerate() {
        assert_eq!(fs::read_to_string(name).unwrap(), format!("garbage {i}"));
    }
}

#[test]
fn quarantine_of_a_missing_file_is_an_io_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let paths = project(dir.path());
    let err = quarantine(&paths.record).unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err:?}");
    assert!(err.to_string().contains("server.json"), "{err}");
}

#[test]
fn an_unreadable_record_is_an_io_error_not_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let paths = project(dir.path());

    // A folder where the file should be: unreadable as a file, whoever we are.
    fs::create_dir(&paths.record).unwrap();
    fs::write(paths.record.join("inside"), "kept").unwrap();
    let err = read_record(&paths.record).unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err:?}");
    assert!(!err.is_corrupt());
    assert!(
        err.to_string()
            .contains(&paths.record.display().to_string())
    );
    // It can still be moved aside, contents and all.
    let moved = quarantine(&paths.record).unwrap();
    assert_eq!(fs::read_to_string(moved.join("inside")).unwrap(), "kept");
    assert!(read_record(&paths.record).unwrap().is_none());

    // A file without read permission: only meaningful when not root, since
    // root reads it anyway.
    fs::write(&paths.record, valid_json()).unwrap();
    fs::set_permissions(&paths.record, fs::Permissions::from_mode(0o000)).unwrap();
    if fs::File::open(&paths.record).is_ok() {
        eprintln!(
            "NOTICE: running as root (or with CAP_DAC_OVERRIDE): a mode-0000 file is readable, \
             so the permission variant is not tested here; the folder variant above covers Io"
        );
    } else {
        let err = read_record(&paths.record).unwrap_err();
        match &err {
            Error::Io { source, .. } => {
                assert_eq!(source.kind(), std::io::ErrorKind::PermissionDenied)
            }
            other => panic!("expected Io, got {other:?}"),
        }
        assert!(!err.is_corrupt());
    }
}

#[test]
fn an_oversized_file_is_corrupt_without_reading_it_all() {
    let dir = tempfile::tempdir().unwrap();
    let paths = project(dir.path());
    let file = fs::File::create(&paths.record).unwrap();
    file.set_len(statefile::MAX_FILE_BYTES + 10).unwrap();
    let err = read_record(&paths.record).unwrap_err();
    assert!(matches!(err, Error::Corrupt { .. }), "{err:?}");
}

#[test]
fn missing_record_is_none_and_round_trip_is_exact() {
    let dir = tempfile::tempdir().unwrap();
    let paths = project(dir.path());
    assert!(read_record(&paths.record).unwrap().is_none());
    let record = sample_record(99, 1000);
    write_atomic(&paths.record, &record).unwrap();
    assert_eq!(read_record(&paths.record).unwrap(), Some(record.clone()));
    // Overwrite with another one.
    let other = sample_record(100, 10);
    write_atomic(&paths.record, &other).unwrap();
    assert_eq!(read_record(&paths.record).unwrap(), Some(other));
    // Generic read: a missing file and a wrong type.
    assert_eq!(
        read_json::<Vec<u32>>(&paths.dir.join("absent.json")).unwrap(),
        None
    );
    let err = read_json::<Vec<u32>>(&paths.record).unwrap_err();
    assert!(matches!(err, Error::WrongShape { .. }), "{err:?}");
}

#[test]
fn unserializable_values_are_an_error_and_leave_no_file() {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;

    let dir = tempfile::tempdir().unwrap();
    let paths = project(dir.path());
    let mut record = sample_record(1, 10);
    record.project_path = PathBuf::from(OsStr::from_bytes(b"/bad\xff"));
    let err = write_atomic(&paths.record, &record).unwrap_err();
    assert!(matches!(err, Error::Serialize { .. }), "{err:?}");
    assert_eq!(fs::read_dir(&paths.dir).unwrap().count(), 0);
}

#[test]
fn temp_files_are_not_the_record_and_stale_ones_are_removed() {
    let dir = tempfile::tempdir().unwrap();
    let paths = project(dir.path());
    let record = sample_record(5, 100);
    write_atomic(&paths.record, &record).unwrap();

    // A writer that is surely dead: a child we started and reaped.
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let dead_pid = child.id();
    child.wait().unwrap();
    let dead = paths
        .dir
        .join(format!(".server.json.tmp-{dead_pid}-0-0123abcd"));
    fs::write(&dead, b"{\"schemaVersion\":1, half a rec").unwrap();
    // One of this (live) process: could be a write in flight, so kept.
    let live = paths.dir.join(format!(
        ".server.json.tmp-{}-99-0123abcd",
        std::process::id()
    ));
    fs::write(&live, b"in flight").unwrap();
    // Not a temp file name: never touched.
    let other = paths.dir.join(".server.json.tmp-notes");
    fs::write(&other, b"mine").unwrap();

    assert_eq!(read_record(&paths.record).unwrap(), Some(record.clone()));
    let removed = remove_stale_temp_files(&paths.dir).unwrap();
    assert_eq!(removed, vec![dead.clone()]);
    assert!(!dead.exists());
    assert!(live.exists());
    assert!(other.exists());
    assert_eq!(read_record(&paths.record).unwrap(), Some(record));
    // A missing folder has nothing to clean.
    assert!(
        remove_stale_temp_files(&dir.path().join("nope"))
            .unwrap()
            .is_empty()
    );
}

#[test]
fn folders_are_0700_and_files_0600() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("state");
    // An existing folder keeps its mode: ocm never changes what it did not
    // create.
    fs::create_dir(&root).unwrap();
    fs::set_permissions(&root, fs::Permissions::from_mode(0o755)).unwrap();
    let paths = ProjectPaths::new(&root, "0123456789abcdef0123456789abcdef");
    ensure_dir(&paths.dir).unwrap();
    assert_eq!(mode(&root), 0o755);
    assert_eq!(mode(&ProjectPaths::servers_dir(&root)), 0o700);
    assert_eq!(mode(&paths.dir), 0o700);
    ensure_dir(&paths.dir).unwrap(); // idempotent

    write_atomic(&paths.record, &sample_record(1, 10)).unwrap();
    assert_eq!(mode(&paths.record), 0o600);
    let secret = paths.dir.join("password");
    write_private(&secret, b"hunter2").unwrap();
    assert_eq!(mode(&secret), 0o600);
    assert_eq!(fs::read(&secret).unwrap(), b"hunter2");
    let guard = statefile::lock(&paths.lock, std::time::Duration::from_secs(5)).unwrap();
    assert_eq!(mode(&paths.lock), 0o600);
    drop(guard);

    // write_atomic creates a missing folder, 0700.
    let elsewhere = dir.path().join("new/deeper/server.json");
    write_atomic(&elsewhere, &sample_record(2, 10)).unwrap();
    assert_eq!(mode(&dir.path().join("new")), 0o700);
    assert_eq!(mode(&dir.path().join("new/deeper")), 0o700);
    assert_eq!(mode(&elsewhere), 0o600);

    // A file in the way of a folder is an error naming it.
    let blocked = dir.path().join("file");
    fs::write(&blocked, "x").unwrap();
    let err = ensure_dir(&blocked.join("sub")).unwrap_err();
    assert!(err.to_string().contains("file"), "{err}");
}

#[test]
fn project_folders_are_listed() {
    let dir = tempfile::tempdir().unwrap();
    assert!(project_hashes(dir.path()).unwrap().is_empty());
    let a = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    let b = "0123456789abcdef0123456789abcdef";
    for hash in [a, b] {
        ensure_dir(&ProjectPaths::new(dir.path(), hash).dir).unwrap();
    }
    let servers = ProjectPaths::servers_dir(dir.path());
    fs::create_dir(servers.join("not-a-hash")).unwrap();
    fs::write(servers.join("ffffffffffffffffffffffffffffffff"), "a file").unwrap();
    assert_eq!(project_hashes(dir.path()).unwrap(), vec![b, a]);
}

#[test]
fn log_rotation_keeps_n_copies() {
    let dir = tempfile::tempdir().unwrap();
    let paths = project(dir.path());
    for generation in 0..5 {
        fs::write(&paths.log, format!("gen {generation}")).unwrap();
        paths.rotate_log(3).unwrap();
        assert!(!paths.log.exists());
    }
    assert_eq!(fs::read_to_string(paths.rotated_log(1)).unwrap(), "gen 4");
    assert_eq!(fs::read_to_string(paths.rotated_log(2)).unwrap(), "gen 3");
    assert_eq!(fs::read_to_string(paths.rotated_log(3)).unwrap(), "gen 2");
    assert!(!paths.rotated_log(4).exists());
    // Nothing to rotate is fine.
    paths.rotate_log(3).unwrap();
    assert_eq!(fs::read_to_string(paths.rotated_log(1)).unwrap(), "gen 4");
}
