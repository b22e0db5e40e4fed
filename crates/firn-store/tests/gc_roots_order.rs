//! A process that made a path valid, which a permanent root already pointed to, and exited
//! while firn's collector was reading its roots: the path is kept. The collector reads the
//! temporary roots before the permanent ones, so whichever of the two reads comes second
//! sees the path protected. (One test in this file: it sets `_FIRN_TEST_GC_SYNC_TEMP_ROOTS`,
//! the pause between the two reads, for the whole process.)

mod gc_support;

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;

use firn_store::gc::GcOptions;
use firn_store::lock::{lock_file, open_lock_file, LockType};
use gc_support::*;

#[test]
fn a_path_made_valid_between_the_reads_of_the_roots_is_kept() {
    let ts = TestStore::new();
    let s = ts.open();
    // The path to come, made in another store (for its files and its registration).
    let other = TestStore::new();
    let o = other.open();
    let p = add(&o, "coming", "c", &[]);
    let info = o.query_path_info(&p).expect("query").expect("valid");
    // A root pointing at it before it exists.
    std::os::unix::fs::symlink(
        format!("/nix/store/{}", p.base_name()),
        ts.state().join("gcroots/coming"),
    )
    .expect("making the root");
    // A live process that is adding it: its temp-roots file, locked, lists the path (pid 1
    // is alive but holds no such file of its own).
    let adder_file = ts.state().join("temproots/1");
    let adder = open_lock_file(&adder_file, true)
        .expect("open")
        .expect("created");
    assert!(lock_file(&adder, LockType::Write, false, &adder_file).expect("lock"));
    (&adder)
        .write_all(format!("/nix/store/{}\0", p.base_name()).as_bytes())
        .expect("writing the temporary root");

    let fifo = sync_fifo(&ts);
    std::env::set_var("_FIRN_TEST_GC_SYNC_TEMP_ROOTS", &fifo);
    let res = std::thread::scope(|scope| {
        let gc = scope.spawn(|| s.collect_garbage(&GcOptions::default()));
        // The collector has read one kind of roots and waits before reading the other.
        // Meanwhile the adder makes the path valid (without announcing it again: it did
        // before the collector started) and exits.
        let mut opened = None;
        for _ in 0..1000 {
            // Opening the fifo for writing without blocking fails until the collector opens
            // it for reading.
            match std::fs::OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(&fifo)
            {
                Ok(f) => {
                    opened = Some(f);
                    break;
                }
                Err(_) => std::thread::sleep(std::time::Duration::from_millis(10)),
            }
        }
        let mut sync = opened.expect("the collector reached its synchronisation point");
        std::fs::copy(other.real(&p), ts.real(&p)).expect("copying the files");
        ts.open()
            .register_valid_paths(std::slice::from_ref(&info))
            .expect("registering the path");
        let _ = std::fs::remove_file(&adder_file);
        drop(adder);
        sync.write_all(b"go").expect("releasing the collector");
        drop(sync);
        gc.join().expect("the collector thread")
    });
    std::env::remove_var("_FIRN_TEST_GC_SYNC_TEMP_ROOTS");
    let res = res.expect("collecting garbage");
    assert!(res.paths.is_empty(), "deleted: {:?}", res.paths);
    assert_eq!(valid(&s), printed(&s, &[&p]));
    assert!(ts.real(&p).exists());
}
