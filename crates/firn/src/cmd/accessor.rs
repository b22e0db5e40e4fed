//! Read-only views of a file tree, for `nix store ls|cat` (the store's files) and
//! `nix nar ls|cat` (a NAR file, indexed once and read by offset).

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use serde_json::{json, Map, Value};

/// What a path in the tree is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Stat {
    Regular {
        size: u64,
        executable: bool,
        nar_offset: Option<u64>,
    },
    Symlink(String),
    Directory,
}

/// A tree of files addressed by `/`-separated paths relative to its root ("" is the root).
pub trait Accessor {
    fn stat(&self, path: &str) -> Result<Option<Stat>>;
    fn read_dir(&self, path: &str) -> Result<Vec<String>>;
    fn read_file(&self, path: &str) -> Result<Vec<u8>>;
}

/// A directory on disk.
pub struct FsAccessor {
    pub root: PathBuf,
}

impl FsAccessor {
    fn real(&self, path: &str) -> PathBuf {
        let p = path.trim_start_matches('/');
        if p.is_empty() {
            self.root.clone()
        } else {
            self.root.join(p)
        }
    }
}

impl Accessor for FsAccessor {
    fn stat(&self, path: &str) -> Result<Option<Stat>> {
        let real = self.real(path);
        let m = match std::fs::symlink_metadata(&real) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(e).with_context(|| format!("getting status of '{}'", real.display()))
            }
        };
        let ft = m.file_type();
        Ok(Some(if ft.is_symlink() {
            let t = std::fs::read_link(&real)
                .with_context(|| format!("reading link '{}'", real.display()))?;
            Stat::Symlink(t.to_string_lossy().into_owned())
        } else if ft.is_dir() {
            Stat::Directory
        } else if ft.is_file() {
            Stat::Regular {
                size: m.len(),
                executable: m.permissions().mode() & 0o100 != 0,
                nar_offset: None,
            }
        } else {
            bail!("file '{}' has an unsupported type", real.display())
        }))
    }

    fn read_dir(&self, path: &str) -> Result<Vec<String>> {
        let real = self.real(path);
        let mut names = Vec::new();
        for e in std::fs::read_dir(&real)
            .with_context(|| format!("reading directory '{}'", real.display()))?
        {
            let e = e.with_context(|| format!("reading directory '{}'", real.display()))?;
            names.push(e.file_name().to_string_lossy().into_owned());
        }
        names.sort();
        Ok(names)
    }

    fn read_file(&self, path: &str) -> Result<Vec<u8>> {
        let real = self.real(path);
        std::fs::read(&real).with_context(|| format!("reading file '{}'", real.display()))
    }
}

/// A NAR file, indexed from its JSON listing.
pub struct NarAccessor {
    file: PathBuf,
    root: Value,
}

impl NarAccessor {
    pub fn open(file: PathBuf) -> Result<NarAccessor> {
        let mut f = std::io::BufReader::new(
            std::fs::File::open(&file)
                .with_context(|| format!("opening NAR file '{}'", file.display()))?,
        );
        let root = firn_format::nar::listing::list_nar(&mut f, false)
            .with_context(|| format!("reading NAR file '{}'", file.display()))?;
        Ok(NarAccessor { file, root })
    }

    fn node(&self, path: &str) -> Option<&Value> {
        let mut cur = &self.root;
        for c in path.split('/').filter(|c| !c.is_empty()) {
            cur = cur.get("entries")?.get(c)?;
        }
        Some(cur)
    }
}

impl Accessor for NarAccessor {
    fn stat(&self, path: &str) -> Result<Option<Stat>> {
        let Some(n) = self.node(path) else {
            return Ok(None);
        };
        Ok(Some(match n.get("type").and_then(Value::as_str) {
            Some("regular") => Stat::Regular {
                size: n.get("size").and_then(Value::as_u64).unwrap_or(0),
                executable: n
                    .get("executable")
                    .and_then(Value::as_bool)
                    .unwrap_or(false),
                nar_offset: n.get("narOffset").and_then(Value::as_u64),
            },
            Some("symlink") => Stat::Symlink(
                n.get("target")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
            ),
            _ => Stat::Directory,
        }))
    }

    fn read_dir(&self, path: &str) -> Result<Vec<String>> {
        match self
            .node(path)
            .and_then(|n| n.get("entries"))
            .and_then(Value::as_object)
        {
            Some(m) => Ok(m.keys().cloned().collect()),
            None => bail!("path '{path}' inside the NAR is not a directory"),
        }
    }

    fn read_file(&self, path: &str) -> Result<Vec<u8>> {
        match self.stat(path)? {
            Some(Stat::Regular {
                size,
                nar_offset: Some(off),
                ..
            }) => {
                let mut f = std::fs::File::open(&self.file)
                    .with_context(|| format!("opening NAR file '{}'", self.file.display()))?;
                f.seek(SeekFrom::Start(off))?;
                let mut buf = Vec::with_capacity(size as usize);
                f.take(size).read_to_end(&mut buf)?;
                if buf.len() as u64 != size {
                    bail!("NAR file '{}' is truncated", self.file.display());
                }
                Ok(buf)
            }
            Some(_) => bail!("path '{path}' inside the NAR is not a regular file"),
            None => bail!("NAR does not contain a path '{path}'"),
        }
    }
}

/// `nix store ls` / `nix nar ls` text output.
pub fn list_text(
    acc: &dyn Accessor,
    path: &str,
    recursive: bool,
    long: bool,
    show_directory: bool,
    out: &mut Vec<String>,
) -> Result<()> {
    let st = acc
        .stat(path)?
        .ok_or_else(|| anyhow::anyhow!("path '{path}' does not exist"))?;
    let rel = if st == Stat::Directory {
        ".".to_string()
    } else {
        path.rsplit('/').next().unwrap_or(path).to_string()
    };
    do_path(acc, &st, path, &rel, show_directory, recursive, long, out)
}

#[allow(clippy::too_many_arguments)]
fn do_path(
    acc: &dyn Accessor,
    st: &Stat,
    cur: &str,
    rel: &str,
    show_directory: bool,
    recursive: bool,
    long: bool,
    out: &mut Vec<String>,
) -> Result<()> {
    if *st == Stat::Directory && !show_directory {
        for name in acc.read_dir(cur)? {
            let c = format!("{cur}/{name}");
            let r = format!("{rel}/{name}");
            let st = acc
                .stat(&c)?
                .ok_or_else(|| anyhow::anyhow!("path '{c}' disappeared"))?;
            do_path_leaf(&st, &r, long, out);
            if recursive && st == Stat::Directory {
                do_path(acc, &st, &c, &r, false, recursive, long, out)?;
            }
        }
        Ok(())
    } else {
        do_path_leaf(st, rel, long, out);
        Ok(())
    }
}

fn do_path_leaf(st: &Stat, rel: &str, long: bool, out: &mut Vec<String>) {
    if long {
        let (tp, size) = match st {
            Stat::Regular {
                executable, size, ..
            } => (
                if *executable {
                    "-r-xr-xr-x"
                } else {
                    "-r--r--r--"
                },
                *size,
            ),
            Stat::Symlink(_) => ("lrwxrwxrwx", 0),
            Stat::Directory => ("dr-xr-xr-x", 0),
        };
        let mut line = format!("{tp} {size:>20} {rel}");
        if let Stat::Symlink(t) = st {
            line.push_str(" -> ");
            line.push_str(t);
        }
        out.push(line);
    } else {
        out.push(rel.to_string());
    }
}

/// `--json` listing of a path (CppNix's `listNar`): directories list their entries, recursively
/// with `recursive`, else each as an empty object.
pub fn list_json(acc: &dyn Accessor, path: &str, recursive: bool) -> Result<Value> {
    let st = acc
        .stat(path)?
        .ok_or_else(|| anyhow::anyhow!("path '{path}' does not exist"))?;
    let mut o = Map::new();
    match st {
        Stat::Regular {
            size,
            executable,
            nar_offset,
        } => {
            o.insert("type".into(), json!("regular"));
            o.insert("size".into(), json!(size));
            if executable {
                o.insert("executable".into(), json!(true));
            }
            if let Some(off) = nar_offset.filter(|o| *o != 0) {
                o.insert("narOffset".into(), json!(off));
            }
        }
        Stat::Symlink(t) => {
            o.insert("type".into(), json!("symlink"));
            o.insert("target".into(), json!(t));
        }
        Stat::Directory => {
            o.insert("type".into(), json!("directory"));
            let mut entries = BTreeMap::new();
            for name in acc.read_dir(path)? {
                let v = if recursive {
                    list_json(acc, &format!("{path}/{name}"), true)?
                } else {
                    json!({})
                };
                entries.insert(name, v);
            }
            o.insert("entries".into(), json!(entries));
        }
    }
    Ok(Value::Object(o))
}
