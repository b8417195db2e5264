//! What is not a plain file of the user's own where a state file should be:
//! a FIFO, a socket, a symlink, a file of another user, a symlinked project
//! folder. Nothing blocks on it, nothing follows it, and the refusal names
//! the path, what is there and what to do.

mod common;

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, SystemTime};

use common::{read_record, sample_record};
use statefile::{Error, ProjectPaths, ensure_dir, lock, read_json, try_lock, write_atomic};

/// Far more than any refusal takes; a blocked open never returns at all.
const PROMPT: Duration = Duration::from_secs(10);

fn project(root: &Path) -> ProjectPaths {
    let paths = ProjectPaths::new(root, "0123456789abcdef0123456789abcdef");
    ensure_dir(&paths.dir).unwrap();
    paths
}

fn mkfifo(path: &Path) {
    let status = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .expect("run mkfifo");
    assert!(status.success(), "mkfifo {}", path.display());
}

/// Runs `f` on a thread and returns its result, failing the test when it
/// has not returned within [`PROMPT`]. A thread blocked for good (in an open
/// of a FIFO) is left behind: the test process ends anyway.
fn promptly<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(PROMPT)
        .unwrap_or_else(|_| panic!("{what} was still blocked after {PROMPT:?}"))
}

/// The error names the path, what is there and says to remove it.
fn assert_refusal(err: &Error, path: &Path, what: &str) {
    let message = err.to_string();
    assert!(
        message.contains(&path.display().to_string()),
        "no path in {message:?}"
    );
    assert!(message.contains(what), "no {what:?} in {message:?}");
    assert!(message.contains("remove"), "no advice in {message:?}");
    assert!(!err.is_corrupt(), "a refusal is not corruption: {err:?}");
}

#[test]
fn a_fifo_record_is_refused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let paths = project(dir.path());
    mkfifo(&paths.record);
    let record = paths.record.clone();
    let err = promptly("read_json_versioned of a FIFO", move || {
        read_record(&record)
    })
    .unwrap_err();
    assert_refusal(&err, &paths.record, "a FIFO");
    let record = paths.record.clone();
    let err = promptly("read_json of a FIFO", move || {
        read_json::<serde_json::Value>(&record)
    })
    .unwrap_err();
    assert_refusal(&err, &paths.record, "a FIFO");
    // Still there: nothing of the user's is removed.
    assert!(
        fs::symlink_metadata(&paths.record)
            .unwrap()
            .file_type()
            .is_fifo()
    );
}

#[test]
fn a_socket_record_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let paths = project(dir.path());
    let _listener = std::os::unix::net::UnixListener::bind(&paths.record).unwrap();
    let record = paths.record.clone();
    let err = promptly("reading a socket", move || read_record(&record)).unwrap_err();
    assert_refusal(&err, &paths.record, "a socket");
}

#[test]
fn a_symlinked_record_is_not_followed() {
    let dir = tempfile::tempdir().unwrap();
    let paths = project(dir.path());
    let elsewhere = dir.path().join("elsewhere.json");
    write_atomic(&elsewhere, &sample_record(3, 10)).unwrap();
    std::os::unix::fs::symlink(&elsewhere, &paths.record).unwrap();
    let err = read_record(&paths.record).unwrap_err();
    assert_refusal(&err, &paths.record, "a symlink");
    // Writing replaces the link itself; what it pointed to is untouched.
    write_atomic(&paths.record, &sample_record(4, 10)).unwrap();
    assert!(fs::symlink_metadata(&paths.record).unwrap().is_file());
    assert_eq!(read_record(&elsewhere).unwrap(), Some(sample_record(3, 10)));
}

#[test]
fn a_fifo_or_symlink_lock_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let paths = project(dir.path());
    mkfifo(&paths.lock);
    let lock_path = paths.lock.clone();
    let err = promptly("locking a FIFO", move || {
        lock(&lock_path, Duration::from_secs(1)).map(|_| ())
    })
    .unwrap_err();
    assert_refusal(&err, &paths.lock, "a FIFO");
    let lock_path = paths.lock.clone();
    let err = promptly("try_lock of a FIFO", move || {
        try_lock(&lock_path).map(|_| ())
    })
    .unwrap_err();
    assert_refusal(&err, &paths.lock, "a FIFO");
    fs::remove_file(&paths.lock).unwrap();

    // A dangling symlink: following it would create its target.
    let target = dir.path().join("target-of-the-link");
    std::os::unix::fs::symlink(&target, &paths.lock).unwrap();
    let err = lock(&paths.lock, Duration::from_secs(1)).unwrap_err();
    assert_refusal(&err, &paths.lock, "a symlink");
    let err = try_lock(&paths.lock).unwrap_err();
    assert_refusal(&err, &paths.lock, "a symlink");
    assert!(!target.exists(), "the link's target was created");
}

#[test]
fn a_symlinked_project_folder_is_refused_but_a_symlinked_root_is_fine() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("state");
    let paths = ProjectPaths::new(&root, "0123456789abcdef0123456789abcdef");
    ensure_dir(paths.dir.parent().unwrap()).unwrap();
    let elsewhere = dir.path().join("elsewhere");
    fs::create_dir(&elsewhere).unwrap();
    std::os::unix::fs::symlink(&elsewhere, &paths.dir).unwrap();

    let err = ensure_dir(&paths.dir).unwrap_err();
    assert_refusal(&err, &paths.dir, "a symlink");
    let err = write_atomic(&paths.record, &sample_record(1, 10)).unwrap_err();
    assert_refusal(&err, &paths.dir, "a symlink");
    let err = lock(&paths.lock, Duration::from_secs(1)).unwrap_err();
    assert_refusal(&err, &paths.dir, "a symlink");
    assert_eq!(
        fs::read_dir(&elsewhere).unwrap().count(),
        0,
        "something was written through the link"
    );

    // The root itself may be reached through a symlink.
    fs::remove_file(&paths.dir).unwrap();
    let link = dir.path().join("state-link");
    std::os::unix::fs::symlink(&root, &link).unwrap();
    ensure_dir(&link).unwrap();
    let via_link = ProjectPaths::new(&link, "0123456789abcdef0123456789abcdef");
    ensure_dir(&via_link.dir).unwrap();
    write_atomic(&via_link.record, &sample_record(2, 10)).unwrap();
    drop(lock(&via_link.lock, Duration::from_secs(1)).unwrap());
    assert_eq!(
        read_record(&paths.record).unwrap(),
        Some(sample_record(2, 10))
    );
}

#[test]
fn files_of_another_user_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let paths = project(dir.path());
    write_atomic(&paths.record, &sample_record(1, 10)).unwrap();
    fs::write(&paths.lock, b"").unwrap();
    let other_uid = 4242;
    let chown = |path: &Path| std::os::unix::fs::lchown(path, Some(other_uid), None);
    if chown(&paths.record).is_err() {
        eprintln!("NOTICE: not allowed to chown (not root): the other-owner case is not tested");
        return;
    }
    chown(&paths.lock).unwrap();
    let err = read_record(&paths.record).unwrap_err();
    assert_refusal(&err, &paths.record, &format!("owned by uid {other_uid}"));
    let err = lock(&paths.lock, Duration::from_secs(1)).unwrap_err();
    assert_refusal(&err, &paths.lock, &format!("owned by uid {other_uid}"));
    assert_eq!(fs::metadata(&paths.record).unwrap().uid(), other_uid);
}

/// A temp file name of `write_atomic` for `record` by `pid`.
fn temp_of(record: &Path, pid: u32, n: u32) -> PathBuf {
    let name = record.file_name().unwrap().to_str().unwrap();
    record.with_file_name(format!(".{name}.tmp-{pid}-{n}-0123abcd"))
}

#[test]
fn the_next_write_of_a_record_removes_its_stale_temp_files() {
    let dir = tempfile::tempdir().unwrap();
    let paths = project(dir.path());
    // A writer that is surely dead: a child we started and reaped.
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let dead_pid = child.id();
    child.wait().unwrap();
    let dead = temp_of(&paths.record, dead_pid, 0);
    fs::write(&dead, b"{\"schemaVersion\":1, half").unwrap();
    // A live pid (ours), but older than any write takes.
    let old = temp_of(&paths.record, std::process::id(), 1);
    fs::write(&old, b"old").unwrap();
    let long_ago = SystemTime::now() - statefile::STALE_TEMP_AGE - Duration::from_secs(60);
    fs::File::options()
        .write(true)
        .open(&old)
        .unwrap()
        .set_modified(long_ago)
        .unwrap();
    // A live writer's fresh temp file may be about to be renamed: kept.
    let fresh = temp_of(&paths.record, std::process::id(), 2);
    fs::write(&fresh, b"in flight").unwrap();
    // Another record's temp file is that record's business.
    let other = temp_of(&paths.dir.join("other.json"), dead_pid, 0);
    fs::write(&other, b"other").unwrap();

    write_atomic(&paths.record, &sample_record(1, 10)).unwrap();
    assert!(!dead.exists(), "a dead writer's temp file is left");
    assert!(!old.exists(), "a stale temp file is left");
    assert!(fresh.exists());
    assert!(other.exists());
}
