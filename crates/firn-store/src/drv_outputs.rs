//! Reading just the outputs of a `.drv` file, which the store records in `DerivationOutputs`
//! when it registers the derivation.

use std::collections::BTreeMap;

use firn_format::{StoreDir, StorePath};

/// Output name -> output path of the ATerm derivation `text` (outputs without a path, as in
/// floating content-addressed derivations, are left out).
pub fn output_paths(sd: &StoreDir, text: &str) -> Result<BTreeMap<String, StorePath>, String> {
    let mut p = Cursor {
        s: text.as_bytes(),
        i: 0,
    };
    p.lit("Derive([")?;
    let mut out = BTreeMap::new();
    if p.peek() == Some(b']') {
        return Ok(out);
    }
    loop {
        p.lit("(")?;
        let name = p.string()?;
        p.lit(",")?;
        let path = p.string()?;
        p.lit(",")?;
        p.string()?;
        p.lit(",")?;
        p.string()?;
        p.lit(")")?;
        if !path.is_empty() {
            let sp = sd.parse(&path).map_err(|e| e.to_string())?;
            out.insert(name, sp);
        }
        match p.next() {
            Some(b',') => continue,
            Some(b']') => break,
            _ => return Err(format!("expected ',' or ']' at byte {}", p.i)),
        }
    }
    Ok(out)
}

struct Cursor<'a> {
    s: &'a [u8],
    i: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }
    fn next(&mut self) -> Option<u8> {
        let c = self.peek();
        self.i += 1;
        c
    }
    fn lit(&mut self, l: &str) -> Result<(), String> {
        if self.s[self.i.min(self.s.len())..].starts_with(l.as_bytes()) {
            self.i += l.len();
            Ok(())
        } else {
            Err(format!("expected '{l}' at byte {}", self.i))
        }
    }
    fn string(&mut self) -> Result<String, String> {
        self.lit("\"")?;
        let mut v = Vec::new();
        loop {
            match self.next() {
                None => return Err("unterminated string".into()),
                Some(b'"') => break,
                Some(b'\\') => match self.next() {
                    Some(b'n') => v.push(b'\n'),
                    Some(b'r') => v.push(b'\r'),
                    Some(b't') => v.push(b'\t'),
                    Some(c) => v.push(c),
                    None => return Err("unterminated string".into()),
                },
                Some(c) => v.push(c),
            }
        }
        String::from_utf8(v).map_err(|_| "string is not UTF-8".to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_outputs() {
        let t = r#"Derive([("dev","/nix/store/ffffffffffffffffffffffffffffffff-x-dev","",""),("out","/nix/store/ffffffffffffffffffffffffffffffff-x","","")],[],[],"s","b",[],[])"#;
        let o = output_paths(&StoreDir::default(), t).unwrap();
        assert_eq!(o.len(), 2);
        assert_eq!(o["dev"].name(), "x-dev");
        assert!(output_paths(&StoreDir::default(), "Derive([(").is_err());
    }
}
