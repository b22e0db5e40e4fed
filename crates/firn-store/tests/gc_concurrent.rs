//! CppNix adding paths while firn's collector runs: its temporary roots reach firn over the
//! GC socket, so neither the path it adds nor a dead path it re-adds is deleted. (One test in
//! this file: it sets `_NIX_TEST_GC_SYNC` for the whole process.)

mod gc_support;

use std::io::Write;

use firn_format::StorePath;
use firn_store::gc::GcOptions;
use gc_support::*;

fn write_src(ts: &TestStore, name: &str, content: &str) -> String {
    let src = ts.root().join("src").join(name);
    std::fs::create_dir_all(src.parent().expect("parent")).expect("mkdir");
    std::fs::write(&src, content).expect("write");
    src.to_str().expect("utf-8 temp dir").to_string()
}

fn cppnix_add(ts: &TestStore, src: &str) -> StorePath {
    let out = ts.cppnix_lines(&["--add", src]);
    let printed = out.into_iter().next().expect("CppNix printed the path");
    firn_format::StoreDir::default()
        .parse(&printed)
        .expect("a store path")
}

#[test]
fn cppnix_adds_while_firn_collects() {
    let ts = TestStore::new();
    let readded_src = write_src(&ts, "readded", "again");
    let readded = cppnix_add(&ts, &readded_src);
    let dead = cppnix_add(&ts, &write_src(&ts, "dead", "d"));
    let new_src = write_src(&ts, "new", "n");
    let fifo = sync_fifo(&ts);
    // firn's collector stops after finding its roots until we write to the fifo.
    std::env::set_var("_NIX_TEST_GC_SYNC", &fifo);
    let s = ts.open();
    let gc = std::thread::scope(|scope| {
        let gc = scope.spawn(|| s.collect_garbage(&GcOptions::default()));
        let lock = ts.state().join("gc.lock");
        let mut running = false;
        for _ in 0..1000 {
            if let Ok(f) = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(&lock)
            {
                if rustix::fs::flock(&f, rustix::fs::FlockOperation::NonBlockingLockShared).is_err()
                {
                    running = true;
                    break;
                }
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert!(running, "firn's collector did not take the GC lock");
        // CppNix cannot take the shared GC lock, so it must use firn's socket.
        let again = cppnix_add(&ts, &readded_src);
        assert_eq!(again, readded);
        let new = cppnix_add(&ts, &new_src);
        std::fs::OpenOptions::new()
            .write(true)
            .open(&fifo)
            .and_then(|mut f| f.write_all(b"go"))
            .expect("releasing the collector");
        (gc.join().expect("the collector thread"), new)
    });
    std::env::remove_var("_NIX_TEST_GC_SYNC");
    let (res, new) = gc;
    let res = res.expect("collecting garbage");
    assert_eq!(res.paths, printed(&s, &[&dead]));
    assert_eq!(valid(&s), printed(&s, &[&readded, &new]));
    assert!(ts.real(&readded).exists() && ts.real(&new).exists());
    assert!(
        !ts.state().join("gc-socket/socket").exists(),
        "the socket outlived the collector"
    );
    drop(s);
    let out = ts.cppnix(&["--verify", "--check-contents"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
