//! Parse speed: parses every `.nix` file under a directory (recursively) a number of times
//! on the calling thread and prints the throughput. `cargo run --release -p firn-syntax
//! --example parse_speed -- DIR [ROUNDS]`.

use firn_syntax::{Interner, Source};

fn collect(dir: &std::path::Path, out: &mut Vec<(String, String)>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            collect(&p, out);
        } else if p.extension().is_some_and(|x| x == "nix") {
            if let Ok(t) = std::fs::read_to_string(&p) {
                out.push((p.to_string_lossy().into_owned(), t));
            }
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let Some(dir) = args.get(1) else {
        eprintln!("usage: parse_speed DIR [ROUNDS]");
        std::process::exit(2);
    };
    let rounds: usize = args.get(2).and_then(|r| r.parse().ok()).unwrap_or(5);
    let mut files = Vec::new();
    collect(std::path::Path::new(dir), &mut files);
    let bytes: usize = files.iter().map(|(_, t)| t.len()).sum();
    let n_files = files.len();
    // Run on a big stack, as the evaluator does.
    let h = std::thread::Builder::new()
        .stack_size(firn_syntax::PARSE_STACK + (64 << 20))
        .spawn(move || {
            let mut best = f64::MAX;
            let mut failed = 0;
            for _ in 0..rounds {
                let mut interner = Interner::default();
                let t = std::time::Instant::now();
                let mut trees = Vec::with_capacity(files.len());
                for (origin, text) in &files {
                    let src = Source {
                        origin,
                        base_dir: "/",
                        home: "/",
                        pipe_operators: false,
                        lints: Default::default(),
                    };
                    match firn_syntax::parse_with_names_here(text, &src, &mut interner, &[]) {
                        Ok(p) => trees.push(p.expr),
                        Err(_) => failed += 1,
                    }
                }
                best = best.min(t.elapsed().as_secs_f64());
                drop(trees);
            }
            (best, failed)
        });
    let (best, failed) = match h.map(|h| h.join()) {
        Ok(Ok(r)) => r,
        _ => {
            eprintln!("parse_speed: the parsing thread failed");
            std::process::exit(1);
        }
    };
    println!(
        "{} files, {} bytes: best {:.2} ms, {:.1} MB/s ({} parse errors per round)",
        n_files,
        bytes,
        best * 1e3,
        bytes as f64 / best / 1e6,
        failed / rounds.max(1)
    );
}
