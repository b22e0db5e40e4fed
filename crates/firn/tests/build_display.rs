//! The live build display on a terminal (`nix build` with stderr on a pseudo-terminal, made by
//! util-linux's `script`): a line per running build with how long it has run and its last log
//! line (escape sequences removed), a summary of done/running/queued builds and the elapsed
//! time, redrawn while a builder is silent, and nothing of it left on the screen at the end.

mod common;

use std::process::Command;

use common::*;

/// Two builds of 5 s side by side (each silent for 4 s after its first line, then printing
/// a line in bold), then one that depends on both.
const DRVS: &str = r#"let
  bb = builtins.path { path = /usr/bin; name = "busybox"; filter = p: t: baseNameOf p == "busybox"; };
  mk = name: deps: secs: derivation {
    inherit name;
    system = "x86_64-linux";
    builder = "${bb}/busybox";
    args = [ "sh" "-c" "echo start ${name} ${toString deps}; ${bb}/busybox sleep ${toString secs}; printf '\\033[1mhalfway\\033[0m\\n'; ${bb}/busybox sleep 1; echo done > $out" ];
  };
in mk "top" [ (mk "aaa" [ ] 4) (mk "bbb" [ ] 4) ] 0
"#;

#[test]
fn running_builds_are_shown_live_on_a_terminal() {
    need_busybox();
    let e = env();
    let file = e.write("drvs.nix", DRVS);
    let store = e.store("s");
    let typescript = e.dir.join("typescript");
    let nix = firn_bin_dir().join("nix");
    let cmd = format!(
        "TERM=xterm '{}' build --store '{store}' --no-link -j2 -f '{}'",
        nix.display(),
        file.display()
    );
    let mut script = Command::new("script");
    script
        .args(["-qfec", &cmd])
        .arg(&typescript)
        .stdin(std::process::Stdio::null());
    // The isolation every firn command of the tests gets.
    for (k, v) in firn("nix").get_envs() {
        match v {
            Some(v) => script.env(k, v),
            None => script.env_remove(k),
        };
    }
    let out = script.output().expect("running script (util-linux)");
    let screen = std::fs::read_to_string(&typescript).expect("reading the typescript");
    assert!(out.status.success(), "{:?}\n{screen}", out.status);
    let has = |s: &str| screen.contains(s);
    assert!(has("building '"), "{screen}");
    assert!(has("[0 done, 2 running, 1 queued, "), "{screen}");
    assert!(has("[2 done, 1 running, 0 queued, "), "{screen}");
    assert!(
        (0..4).any(|n| has(&format!("  aaa ({n}s): start aaa"))),
        "{screen}"
    );
    // Redrawn while the builders are silent: the clock of a build moves without output.
    assert!(
        // (Three seconds of silence hold at least two ticks even on a loaded machine.)
        ["aaa", "bbb"]
            .iter()
            .any(|b| (1..4).any(|n| has(&format!("  {b} ({n}s): start {b}")))),
        "{screen}"
    );
    // The builder's escape sequences are not copied into the status area.
    assert!(
        (4..8).any(|n| has(&format!("  aaa ({n}s): halfway\r"))),
        "{screen}"
    );
    assert!(!screen.contains("\x1b[1mhalfway"), "{screen}");
    // At the end the status area is cleared: the last thing written erases a line (`script`
    // itself then notes the end in the file).
    let tail = screen.split("\nScript done").next().unwrap_or(&screen);
    let tail = tail.trim_end_matches(['\r', '\n']);
    assert!(tail.ends_with("\x1b[K"), "{tail:?}");
}

/// What a tool reading `--log-format internal-json` gets from a build: lines that are all
/// `@nix` JSON, the activities a build has in CppNix 2.8 (a realisation, its builds, each
/// build with its log lines) and the builds' final progress counts as CppNix's, and a
/// failure's error once, as a message.
#[test]
fn internal_json_is_all_json_with_cppnix_activities() {
    need_busybox();
    let e = env();
    let file = e.write(
        "j.nix",
        &format!(
            "let\n  bb = builtins.path {{ path = /usr/bin; name = \"busybox\"; filter = p: t: baseNameOf p == \"busybox\"; }};\n{MK_BUSYBOX}in {{\n  ok = mk \"okk\" \"echo hi; echo x > $out\" {{ }};\n  bad = mk \"bad\" \"echo oops; exit 3\" {{ }};\n}}\n"
        ),
    );
    for (attr, progress) in [("ok", [1, 1, 0, 0]), ("bad", [0, 0, 0, 1])] {
        let mut seen = Vec::new();
        for (name, mut c) in [("firn", firn("nix")), ("CppNix", cppnix("nix"))] {
            let out = c
                .args(["build", "--store", &e.store(&format!("{name}-{attr}"))])
                .args(["--no-link", "--log-format", "internal-json", "-f"])
                .arg(&file)
                .arg(attr)
                .output()
                .expect("running nix build");
            assert_eq!(out.status.success(), attr == "ok", "{name} {attr}");
            let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
            let mut started = std::collections::BTreeSet::new();
            let mut builds_id = None;
            let (mut last_progress, mut logs, mut errors) = (None, Vec::new(), 0);
            for line in stderr.lines() {
                let json = line
                    .strip_prefix("@nix ")
                    .and_then(|j| serde_json::from_str::<serde_json::Value>(j).ok())
                    .unwrap_or_else(|| panic!("{name}: not internal-json: {line:?}"));
                let kind = json["type"].as_u64();
                match json["action"].as_str() {
                    Some("start") => {
                        started.insert(kind.unwrap_or(0));
                        if kind == Some(104) {
                            builds_id = json["id"].as_u64();
                        }
                    }
                    Some("result") if kind == Some(105) && json["id"].as_u64() == builds_id => {
                        last_progress = Some(json["fields"].clone());
                    }
                    Some("result") if kind == Some(101) => logs.push(json["fields"][0].clone()),
                    Some("msg")
                        if json["msg"]
                            .as_str()
                            .is_some_and(|m| m.contains("exit code 3")) =>
                    {
                        errors += 1
                    }
                    _ => {}
                }
            }
            for kind in [102, 104, 105] {
                assert!(
                    started.contains(&kind),
                    "{name} {attr}: no activity {kind}\n{stderr}"
                );
            }
            assert_eq!(
                last_progress,
                Some(serde_json::json!(progress)),
                "{name} {attr}\n{stderr}"
            );
            assert_eq!(
                errors,
                usize::from(attr == "bad"),
                "{name} {attr}\n{stderr}"
            );
            seen.push(logs);
        }
        assert_eq!(seen[0], seen[1], "{attr}: log lines, firn then CppNix");
    }
}
