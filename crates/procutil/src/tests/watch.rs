//! The watch module against real files, folders, pipes and processes.

use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use super::support::*;
use crate::watch::{Change, Watch, WatchEvent};
use crate::{Error, Pidfd, SpawnSpec, spawn_detached};

const WAIT: Duration = Duration::from_secs(30);

fn soon() -> Instant {
    Instant::now() + WAIT
}

/// Waits for events until one matches, failing on a timeout.
fn expect(watch: &mut Watch, what: &str, wanted: impl Fn(&WatchEvent) -> bool) -> WatchEvent {
    let deadline = soon();
    let mut seen = Vec::new();
    loop {
        let event = watch.wait(deadline).unwrap();
        if wanted(&event) {
            return event;
        }
        if event == WatchEvent::TimedOut {
            panic!("no {what} within {WAIT:?}; saw {seen:?}");
        }
        seen.push(event);
    }
}

#[test]
fn a_file_written_renamed_and_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("server.log");
    std::fs::write(&path, "").unwrap();
    let mut watch = Watch::new();
    let token = watch.add_file(&path).unwrap();
    assert_eq!(
        watch.add_file(&path).unwrap(),
        token,
        "same inode, same token"
    );
    assert_eq!(
        watch.wait(Instant::now()).unwrap(),
        WatchEvent::TimedOut,
        "nothing happened yet"
    );

    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap();
    file.write_all(b"line\n").unwrap();
    let modified = WatchEvent::Path {
        token,
        change: Change::Modified,
    };
    assert_eq!(watch.wait(soon()).unwrap(), modified);
    drop(file);
    expect(&mut watch, "close after write", |e| {
        *e == WatchEvent::Path {
            token,
            change: Change::Written,
        }
    });

    // Rotation: the watch follows the inode to its new name.
    let rotated = dir.path().join("server.log.1");
    std::fs::rename(&path, &rotated).unwrap();
    expect(&mut watch, "the rename", |e| {
        *e == WatchEvent::Path {
            token,
            change: Change::MovedAway,
        }
    });
    std::fs::remove_file(&rotated).unwrap();
    expect(&mut watch, "the deletion", |e| {
        *e == WatchEvent::Path {
            token,
            change: Change::Deleted,
        }
    });
    expect(&mut watch, "the end of the watch", |e| {
        *e == WatchEvent::Path {
            token,
            change: Change::Unwatched,
        }
    });
    assert!(watch.drain().unwrap().is_empty());
}

#[test]
fn entries_of_a_folder() {
    let dir = tempfile::tempdir().unwrap();
    let mut watch = Watch::new();
    let token = watch.add_dir(dir.path()).unwrap();

    std::fs::create_dir(dir.path().join("0123abcd")).unwrap();
    let event = expect(&mut watch, "the new folder", |e| {
        matches!(
            e,
            WatchEvent::Entry {
                change: Change::Created,
                ..
            }
        )
    });
    assert_eq!(
        event,
        WatchEvent::Entry {
            token,
            name: "0123abcd".into(),
            is_dir: true,
            change: Change::Created,
        }
    );

    // Written elsewhere, then renamed in: an atomic write.
    let outside = tempfile::tempdir().unwrap();
    let staged = outside.path().join("record.json");
    std::fs::write(&staged, "{}").unwrap();
    std::fs::rename(&staged, dir.path().join("record.json")).unwrap();
    expect(&mut watch, "the rename into the folder", |e| {
        *e == WatchEvent::Entry {
            token,
            name: "record.json".into(),
            is_dir: false,
            change: Change::MovedIn,
        }
    });

    std::fs::write(dir.path().join("record.json"), "{\"a\":1}").unwrap();
    expect(&mut watch, "the write", |e| {
        *e == WatchEvent::Entry {
            token,
            name: "record.json".into(),
            is_dir: false,
            change: Change::Written,
        }
    });
    std::fs::remove_file(dir.path().join("record.json")).unwrap();
    expect(&mut watch, "the deletion", |e| {
        *e == WatchEvent::Entry {
            token,
            name: "record.json".into(),
            is_dir: false,
            change: Change::Deleted,
        }
    });

    // Removed sources say nothing more.
    watch.remove(token);
    std::fs::write(dir.path().join("late"), "x").unwrap();
    assert_eq!(
        watch
            .wait(Instant::now() + Duration::from_millis(20))
            .unwrap(),
        WatchEvent::TimedOut
    );
}

#[test]
fn missing_paths_are_errors_that_say_so() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope");
    let mut watch = Watch::new();
    for err in [
        watch.add_file(&missing).unwrap_err(),
        watch.add_dir(&missing).unwrap_err(),
    ] {
        match &err {
            Error::WatchPath { path, source } => {
                assert_eq!(path, &missing);
                assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
            }
            other => panic!("{other:?}"),
        }
        assert!(err.to_string().contains("nope"), "{err}");
    }
    // A file is not a folder.
    std::fs::write(&missing, "").unwrap();
    assert!(matches!(
        watch.add_dir(&missing),
        Err(Error::WatchPath { .. })
    ));
}

#[test]
fn a_process_exit_a_pipe_and_a_log_in_one_wait() {
    setup();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("server.log");
    std::fs::write(&log, "").unwrap();
    let child = ChildGuard(spawn_detached(&SpawnSpec::new("sleep").arg("1000")).unwrap());
    let pidfd = Pidfd::open(child.pid()).unwrap().expect("pidfd support");
    let (read_end, write_end) = pipe();

    let mut watch = Watch::new();
    let exit = watch.add_pidfd(&pidfd).unwrap();
    let pipe_token = watch.add_fd(&read_end).unwrap();
    let file = watch.add_file(&log).unwrap();
    let started = Instant::now();
    assert_eq!(
        watch
            .wait(Instant::now() + Duration::from_millis(50))
            .unwrap(),
        WatchEvent::TimedOut
    );
    assert!(started.elapsed() >= Duration::from_millis(50));

    write_all(&write_end, b"x");
    assert_eq!(
        watch.wait(soon()).unwrap(),
        WatchEvent::Readable { token: pipe_token }
    );
    // Level-triggered until read.
    assert_eq!(
        watch.wait(soon()).unwrap(),
        WatchEvent::Readable { token: pipe_token }
    );
    watch.remove(pipe_token);

    std::fs::OpenOptions::new()
        .append(true)
        .open(&log)
        .unwrap()
        .write_all(b"opencode server listening on http://127.0.0.1:4096\n")
        .unwrap();
    assert_eq!(
        watch.wait(soon()).unwrap(),
        WatchEvent::Path {
            token: file,
            change: Change::Modified
        }
    );

    child.kill().unwrap();
    expect(&mut watch, "the exit", |e| {
        *e == WatchEvent::Exited { token: exit }
    });
    assert!(child.try_wait().unwrap().is_some(), "exited, so reapable");
    watch.remove(exit);
    watch.remove(file);
    assert_eq!(
        watch
            .wait(Instant::now() + Duration::from_millis(10))
            .unwrap(),
        WatchEvent::TimedOut
    );
}

#[test]
fn a_wait_without_sources_sleeps_to_its_deadline() {
    let mut watch = Watch::new();
    let started = Instant::now();
    assert_eq!(
        watch.wait(started + Duration::from_millis(30)).unwrap(),
        WatchEvent::TimedOut
    );
    assert!(started.elapsed() >= Duration::from_millis(30));
}

fn pipe() -> (OwnedFd, OwnedFd) {
    let mut ends = [0; 2];
    // SAFETY: ends is a valid array of two descriptors.
    assert_eq!(
        unsafe { libc::pipe2(ends.as_mut_ptr(), libc::O_CLOEXEC) },
        0
    );
    // SAFETY: both were just created and are owned here.
    unsafe { (OwnedFd::from_raw_fd(ends[0]), OwnedFd::from_raw_fd(ends[1])) }
}

fn write_all(fd: &OwnedFd, bytes: &[u8]) {
    // SAFETY: bytes is valid for its length.
    let n = unsafe { libc::write(fd.as_raw_fd(), bytes.as_ptr().cast(), bytes.len()) };
    assert_eq!(usize::try_from(n).unwrap(), bytes.len());
}
