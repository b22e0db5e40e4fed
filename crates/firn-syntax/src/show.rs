//! Printing an AST as CppNix's `Expr::show` does (the output of `nix-instantiate --parse`).

use std::fmt::Write;

use crate::ast::*;

/// The expression as `nix-instantiate --parse` prints it.
pub fn show(interner: &Interner, e: &Expr) -> String {
    let mut s = String::new();
    Shower { i: interner }.expr(&mut s, e, &[]);
    s
}

/// C++ iostream's default formatting of a double (`%g`, 6 significant digits).
pub fn format_float(v: f64) -> String {
    if v == 0.0 {
        return if v.is_sign_negative() {
            "-0".into()
        } else {
            "0".into()
        };
    }
    if !v.is_finite() {
        return if v.is_nan() {
            "nan".into()
        } else if v > 0.0 {
            "inf".into()
        } else {
            "-inf".into()
        };
    }
    let sci = format!("{:.5e}", v);
    let (mant, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let trim = |s: &str| -> String {
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            s.to_string()
        }
    };
    if !(-4..6).contains(&exp) {
        format!(
            "{}e{}{:02}",
            trim(mant),
            if exp < 0 { '-' } else { '+' },
            exp.abs()
        )
    } else {
        let decimals = (5 - exp).max(0) as usize;
        trim(&format!("{:.*}", decimals, v))
    }
}

/// A string literal with Nix's escapes.
pub fn literal_string(out: &mut String, s: &str) {
    out.push('"');
    let b: Vec<char> = s.chars().collect();
    for (k, &c) in b.iter().enumerate() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '$' if b.get(k + 1) == Some(&'{') => out.push_str("\\$"),
            c => out.push(c),
        }
    }
    out.push('"');
}

struct Shower<'a> {
    i: &'a Interner,
}

impl Shower<'_> {
    fn name(&self, s: Symbol) -> &str {
        self.i.name(s)
    }

    fn attr_path(&self, out: &mut String, path: &[AttrName], inherit_from: &[Expr]) {
        for (k, a) in path.iter().enumerate() {
            if k > 0 {
                out.push('.');
            }
            match a {
                AttrName::Static(s) => out.push_str(self.name(*s)),
                AttrName::Dynamic(e) => {
                    out.push_str("\"${");
                    self.expr(out, e, inherit_from);
                    out.push_str("}\"");
                }
            }
        }
    }

    fn bindings(&self, out: &mut String, a: &Attrs) {
        let mut sorted: Vec<(&Symbol, &AttrDef)> = a.attrs.iter().collect();
        sorted.sort_by(|x, y| self.name(*x.0).cmp(self.name(*y.0)));
        let inherits: Vec<&str> = sorted
            .iter()
            .filter(|(_, d)| d.kind == AttrKind::Inherited)
            .map(|(s, _)| self.name(**s))
            .collect();
        if !inherits.is_empty() {
            out.push_str("inherit");
            for n in inherits {
                out.push(' ');
                out.push_str(n);
            }
            out.push_str("; ");
        }
        let mut from: std::collections::BTreeMap<usize, Vec<&str>> = Default::default();
        for (s, d) in &sorted {
            if let AttrKind::InheritedFrom(i) = d.kind {
                from.entry(i as usize).or_default().push(self.name(**s));
            }
        }
        for (i, names) in from {
            out.push_str("inherit (");
            if let Some(e) = a.inherit_from.get(i) {
                self.expr(out, e, &a.inherit_from);
            }
            out.push(')');
            for n in names {
                out.push(' ');
                out.push_str(n);
            }
            out.push_str("; ");
        }
        for (s, d) in &sorted {
            if d.kind == AttrKind::Plain {
                out.push_str(self.name(**s));
                out.push_str(" = ");
                self.expr(out, &d.value, &a.inherit_from);
                out.push_str("; ");
            }
        }
        for (n, v, _) in &a.dynamic {
            out.push_str("\"${");
            self.expr(out, n, &a.inherit_from);
            out.push_str("}\" = ");
            self.expr(out, v, &a.inherit_from);
            out.push_str("; ");
        }
    }

    fn expr(&self, out: &mut String, e: &Expr, inherit_from: &[Expr]) {
        match &e.kind {
            ExprKind::Int(v) => {
                let _ = write!(out, "{v}");
            }
            ExprKind::Float(v) => out.push_str(&format_float(*v)),
            ExprKind::Str(s) => literal_string(out, s),
            ExprKind::Path(p) => out.push_str(p),
            ExprKind::Var(s) | ExprKind::Global(s) => out.push_str(self.name(*s)),
            ExprKind::CurPos => out.push_str("__curPos"),
            ExprKind::Select { e, path } => {
                out.push('(');
                self.expr(out, e, inherit_from);
                out.push_str(").");
                self.attr_path(out, path, inherit_from);
            }
            ExprKind::SelectOr(s) => {
                out.push('(');
                self.expr(out, &s.e, inherit_from);
                out.push_str(").");
                self.attr_path(out, &s.path, inherit_from);
                out.push_str(" or (");
                self.expr(out, &s.default, inherit_from);
                out.push(')');
            }
            ExprKind::HasAttr { e, path } => {
                out.push_str("((");
                self.expr(out, e, inherit_from);
                out.push_str(") ? ");
                self.attr_path(out, path, inherit_from);
                out.push(')');
            }
            ExprKind::Attrs(a) => {
                if a.rec {
                    out.push_str("rec ");
                }
                out.push_str("{ ");
                self.bindings(out, a);
                out.push('}');
            }
            ExprKind::List(items) => {
                out.push_str("[ ");
                for i in items {
                    out.push('(');
                    self.expr(out, i, inherit_from);
                    out.push_str(") ");
                }
                out.push(']');
            }
            ExprKind::Lambda { arg, formals, body } => {
                out.push('(');
                if let Some(f) = formals {
                    out.push_str("{ ");
                    let mut fs: Vec<&Formal> = f.formals.iter().collect();
                    fs.sort_by(|a, b| self.name(a.name).cmp(self.name(b.name)));
                    let mut first = true;
                    for x in fs {
                        if !first {
                            out.push_str(", ");
                        }
                        first = false;
                        out.push_str(self.name(x.name));
                        if let Some(d) = &x.default {
                            out.push_str(" ? ");
                            self.expr(out, d, inherit_from);
                        }
                    }
                    if f.ellipsis {
                        if !first {
                            out.push_str(", ");
                        }
                        out.push_str("...");
                    }
                    out.push_str(" }");
                    if arg.is_some() {
                        out.push_str(" @ ");
                    }
                }
                if let Some(a) = arg {
                    out.push_str(self.name(*a));
                }
                out.push_str(": ");
                self.expr(out, body, inherit_from);
                out.push(')');
            }
            ExprKind::Call { fun, args } => {
                out.push('(');
                self.expr(out, fun, inherit_from);
                for a in args {
                    out.push(' ');
                    self.expr(out, a, inherit_from);
                }
                out.push(')');
            }
            ExprKind::Let { attrs, body } => {
                out.push_str("(let ");
                self.bindings(out, attrs);
                out.push_str("in ");
                self.expr(out, body, inherit_from);
                out.push(')');
            }
            ExprKind::With { env, body } => {
                out.push_str("(with ");
                self.expr(out, env, inherit_from);
                out.push_str("; ");
                self.expr(out, body, inherit_from);
                out.push(')');
            }
            ExprKind::If { cond, then, else_ } => {
                out.push_str("(if ");
                self.expr(out, cond, inherit_from);
                out.push_str(" then ");
                self.expr(out, then, inherit_from);
                out.push_str(" else ");
                self.expr(out, else_, inherit_from);
                out.push(')');
            }
            ExprKind::Assert { cond, body } => {
                out.push_str("assert ");
                self.expr(out, cond, inherit_from);
                out.push_str("; ");
                self.expr(out, body, inherit_from);
            }
            ExprKind::Not(e) => {
                out.push_str("(! ");
                self.expr(out, e, inherit_from);
                out.push(')');
            }
            ExprKind::Bin { op, a, b } => {
                out.push('(');
                self.expr(out, a, inherit_from);
                out.push(' ');
                out.push_str(op.symbol());
                out.push(' ');
                self.expr(out, b, inherit_from);
                out.push(')');
            }
            ExprKind::Concat { parts, .. } => {
                out.push('(');
                for (k, p) in parts.iter().enumerate() {
                    if k > 0 {
                        out.push_str(" + ");
                    }
                    self.expr(out, p, inherit_from);
                }
                out.push(')');
            }
            ExprKind::InheritFrom(i) => {
                if let Some(e) = inherit_from.get(*i) {
                    self.expr(out, e, inherit_from);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_like_cpp() {
        assert_eq!(format_float(1.5), "1.5");
        assert_eq!(format_float(100.0), "100");
        assert_eq!(format_float(1e6), "1e+06");
        assert_eq!(format_float(123456.0), "123456");
        assert_eq!(format_float(1234567.0), "1.23457e+06");
        assert_eq!(format_float(0.0001), "0.0001");
        assert_eq!(format_float(0.00001), "1e-05");
        assert_eq!(format_float(1.23456789), "1.23457");
    }
}
