//! The legacy tools (`nix-store`, `nix-hash`, ...), with Nix's hand-rolled argument style.

pub mod gc;
pub mod nix_build;
pub mod nix_copy_closure;
pub mod nix_hash;
pub mod nix_instantiate;
pub mod nix_store;
pub mod query;

/// Expand compound short flags as Nix does: `-qR` becomes `-q -R`, and `-j3` becomes `-j 3`
/// (expansion stops at the first character that is not a letter).
pub fn expand_short_flags(args: Vec<String>) -> Vec<String> {
    let mut out = Vec::with_capacity(args.len());
    let mut dash_dash = false;
    for a in args {
        let b = a.as_bytes();
        if !dash_dash && b.len() > 2 && b[0] == b'-' && b[1] != b'-' && b[1].is_ascii_alphabetic() {
            out.push(format!("-{}", b[1] as char));
            for (j, &c) in b.iter().enumerate().skip(2) {
                if c.is_ascii_alphabetic() {
                    out.push(format!("-{}", c as char));
                } else {
                    out.push(a[j..].to_string());
                    break;
                }
            }
            continue;
        }
        if a == "--" {
            dash_dash = true;
        }
        out.push(a);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expands_like_nix() {
        let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(expand_short_flags(v(&["-qR", "x"])), v(&["-q", "-R", "x"]));
        assert_eq!(expand_short_flags(v(&["-j3"])), v(&["-j", "3"]));
        assert_eq!(expand_short_flags(v(&["--", "-qR"])), v(&["--", "-qR"]));
        assert_eq!(expand_short_flags(v(&["--query"])), v(&["--query"]));
    }
}
