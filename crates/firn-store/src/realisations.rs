//! Realisations (`ca-derivations`): which store path an output of a derivation, named by the
//! derivation's hash modulo with its outputs masked, was built at. The tables are CppNix 2.8's
//! extension of the schema (`Realisations`, `RealisationsRefs`), created when the feature is on
//! and versioned by `db/ca-schema` (version 3), as CppNix does.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::Path;

use firn_format::{Hash, StorePath};
use rusqlite::{params, OptionalExtension};

use crate::db::Db;
use crate::error::{io_err, Result, StoreError};

/// The version of the `ca-derivations` tables that `db/ca-schema` records.
pub const CA_SCHEMA_VERSION: u32 = 3;

/// The tables as CppNix 2.8 creates them on a store that has none.
const CA_SCHEMA: &str = "
create table if not exists Realisations (
    id integer primary key autoincrement not null,
    drvPath text not null,
    outputName text not null, -- symbolic output id, usually \"out\"
    outputPath integer not null,
    signatures text, -- space-separated list
    foreign key (outputPath) references ValidPaths(id) on delete cascade
);

create index if not exists IndexRealisations on Realisations(drvPath, outputName);

create table if not exists RealisationsRefs (
    referrer integer not null,
    realisationReference integer,
    foreign key (referrer) references Realisations(id) on delete cascade,
    foreign key (realisationReference) references Realisations(id) on delete restrict
);

-- used by QueryRealisationReferences
create index if not exists IndexRealisationsRefs on RealisationsRefs(referrer);
-- used by cascade deletion when ValidPaths is deleted
create index if not exists IndexRealisationsRefsOnOutputPath on Realisations(outputPath);
";

/// One output of a derivation as realisations name it: the derivation's masked hash modulo
/// and the output name (`sha256:<base16>!<output>`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct DrvOutput {
    pub drv_hash: Hash,
    pub output: String,
}

impl DrvOutput {
    /// The hash as the `drvPath` column holds it: `sha256:<base16>`.
    pub fn hash_str(&self) -> String {
        format!("{}:{}", self.drv_hash.algo(), self.drv_hash.to_base16())
    }
}

impl fmt::Display for DrvOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}!{}", self.hash_str(), self.output)
    }
}

/// A realisation: where an output was built, and the realisations of its inputs that the
/// output refers to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Realisation {
    pub id: DrvOutput,
    pub out_path: StorePath,
    pub signatures: BTreeSet<String>,
    pub dependent: BTreeMap<DrvOutput, StorePath>,
}

impl Realisation {
    /// The JSON CppNix 2.8 writes for a realisation (its `toJSON().dump()`: keys sorted, no
    /// spaces, output paths as base names), with or without the `signatures` key.
    pub fn to_json(&self, with_sigs: bool) -> String {
        fn json_str(s: &str) -> String {
            serde_json::Value::from(s).to_string()
        }
        // Keys of the dependent map sorted as strings (CppNix's JSON objects are sorted maps).
        let deps: BTreeMap<String, &str> = self
            .dependent
            .iter()
            .map(|(id, p)| (id.to_string(), p.base_name()))
            .collect();
        let mut s = String::from("{\"dependentRealisations\":{");
        for (i, (id, p)) in deps.iter().enumerate() {
            if i > 0 {
                s.push(',');
            }
            s.push_str(&json_str(id));
            s.push(':');
            s.push_str(&json_str(p));
        }
        s.push_str("},\"id\":");
        s.push_str(&json_str(&self.id.to_string()));
        s.push_str(",\"outPath\":");
        s.push_str(&json_str(self.out_path.base_name()));
        if with_sigs {
            s.push_str(",\"signatures\":[");
            for (i, sig) in self.signatures.iter().enumerate() {
                if i > 0 {
                    s.push(',');
                }
                s.push_str(&json_str(sig));
            }
            s.push(']');
        }
        s.push('}');
        s
    }

    /// What signatures of a realisation are made over: its JSON without `signatures`.
    pub fn fingerprint(&self) -> String {
        self.to_json(false)
    }

    /// Add a signature by `key`.
    pub fn sign(&mut self, key: &firn_format::signature::SecretKey) {
        let sig = key.sign(self.fingerprint().as_bytes());
        self.signatures.insert(sig);
    }
}

fn sql<'a>(op: &'static str, db: &'a Path) -> impl FnOnce(rusqlite::Error) -> StoreError + 'a {
    move |source| StoreError::Sqlite {
        op,
        db: db.to_path_buf(),
        source,
    }
}

/// Create the tables if `schema_file` (`db/ca-schema`) says they are not there yet, as
/// CppNix 2.8 does when it opens a store with the feature on; a newer version is an error.
pub fn migrate_ca_schema(db: &mut Db, schema_file: &Path) -> Result<()> {
    let current = match std::fs::read_to_string(schema_file) {
        Ok(s) => s.trim().parse::<u32>().map_err(|_| {
            StoreError::Corrupt(schema_file.to_path_buf(), "bad ca-schema version".into())
        })?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
        Err(e) => return Err(io_err("reading", schema_file)(e)),
    };
    if current == CA_SCHEMA_VERSION {
        return Ok(());
    }
    if current > CA_SCHEMA_VERSION {
        return Err(StoreError::Other(format!(
            "current Nix store ca-schema is version {current}, but I only support {CA_SCHEMA_VERSION}"
        )));
    }
    if current != 0 {
        return Err(StoreError::Other(format!(
            "the Nix store's ca-schema is version {current}; upgrade it with CppNix first"
        )));
    }
    let file = db.file().to_path_buf();
    db.conn_keeping_infos()
        .execute_batch(CA_SCHEMA)
        .map_err(sql("creating the ca-derivations tables", &file))?;
    std::fs::write(schema_file, CA_SCHEMA_VERSION.to_string())
        .map_err(io_err("writing", schema_file))?;
    Ok(())
}

/// The row id and output path of a realisation, if there is one.
fn query_core(db: &mut Db, id: &DrvOutput) -> Result<Option<(i64, StorePath, String)>> {
    let file = db.file().to_path_buf();
    let row: Option<(i64, String, Option<String>)> = db
        .conn_keeping_infos()
        .query_row(
            "select Realisations.id, Output.path, Realisations.signatures from Realisations \
             inner join ValidPaths as Output on Output.id = Realisations.outputPath \
             where drvPath = ? and outputName = ?",
            params![id.hash_str(), id.output],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()
        .map_err(sql("querying a realisation", &file))?;
    let Some((rid, path, sigs)) = row else {
        return Ok(None);
    };
    let p = parse_path(db, &path)?;
    Ok(Some((rid, p, sigs.unwrap_or_default())))
}

fn parse_path(db: &Db, s: &str) -> Result<StorePath> {
    db.store_dir()
        .parse(s)
        .map_err(|e| StoreError::Corrupt(db.file().to_path_buf(), format!("bad path '{s}': {e}")))
}

/// The realisation of `id`, with its dependent realisations.
pub fn query_realisation(db: &mut Db, id: &DrvOutput) -> Result<Option<Realisation>> {
    let Some((rid, out_path, sigs)) = query_core(db, id)? else {
        return Ok(None);
    };
    let file = db.file().to_path_buf();
    let refs: Vec<(String, String)> = {
        let conn = db.conn_keeping_infos();
        let mut st = conn
            .prepare_cached(
                "select drvPath, outputName from Realisations \
                 join RealisationsRefs on realisationReference = Realisations.id \
                 where referrer = ?",
            )
            .map_err(sql("querying realisation references", &file))?;
        let rows = st
            .query_map(params![rid], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(sql("querying realisation references", &file))?;
        rows.collect::<std::result::Result<_, _>>()
            .map_err(sql("querying realisation references", &file))?
    };
    let mut dependent = BTreeMap::new();
    for (h, o) in refs {
        let drv_hash = Hash::parse(&h, None).map_err(|e| {
            StoreError::Corrupt(file.clone(), format!("bad realisation hash '{h}': {e}"))
        })?;
        let dep = DrvOutput {
            drv_hash,
            output: o,
        };
        if let Some((_, p, _)) = query_core(db, &dep)? {
            dependent.insert(dep, p);
        }
    }
    Ok(Some(Realisation {
        id: id.clone(),
        out_path,
        signatures: sigs
            .split(' ')
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect(),
        dependent,
    }))
}

/// Record a realisation (CppNix's `registerDrvOutput`): a new row, or for one already there
/// with the same path, the signatures merged; another path for the same output is an error,
/// as is a dependent realisation that is missing or differs.
pub fn register_realisation(db: &mut Db, r: &Realisation) -> Result<()> {
    let file = db.file().to_path_buf();
    db.conn_keeping_infos()
        .execute_batch("begin immediate")
        .map_err(sql("starting a transaction", &file))?;
    let res = register_in_transaction(db, r);
    let end = if res.is_ok() { "commit" } else { "rollback" };
    let ended = db
        .conn_keeping_infos()
        .execute_batch(end)
        .map_err(sql("ending a transaction", &file));
    res?;
    ended
}

fn register_in_transaction(db: &mut Db, r: &Realisation) -> Result<()> {
    let file = db.file().to_path_buf();
    let sd = db.store_dir().clone();
    match query_realisation(db, &r.id)? {
        Some(old) if old.out_path != r.out_path => {
            return Err(StoreError::Other(format!(
                "Trying to register a realisation of '{}', but we already have another one locally.\nLocal:  {}\nRemote: {}",
                r.id,
                sd.display(&old.out_path),
                sd.display(&r.out_path)
            )));
        }
        Some(old) => {
            let mut sigs = old.signatures;
            sigs.extend(r.signatures.iter().cloned());
            let joined = sigs.into_iter().collect::<Vec<_>>().join(" ");
            db.conn_keeping_infos()
                .execute(
                    "update Realisations set signatures = ? where drvPath = ? and outputName = ?",
                    params![joined, r.id.hash_str(), r.id.output],
                )
                .map_err(sql("updating a realisation", &file))?;
        }
        None => {
            let joined = r.signatures.iter().cloned().collect::<Vec<_>>().join(" ");
            db.conn_keeping_infos()
                .execute(
                    "insert into Realisations (drvPath, outputName, outputPath, signatures) \
                     values (?, ?, (select id from ValidPaths where path = ?), ?)",
                    params![
                        r.id.hash_str(),
                        r.id.output,
                        sd.display(&r.out_path),
                        joined
                    ],
                )
                .map_err(sql("registering a realisation", &file))?;
        }
    }
    for (dep, path) in &r.dependent {
        match query_core(db, dep)? {
            None => {
                return Err(StoreError::Other(format!(
                    "unable to register the derivation '{}' as it depends on the non existent '{dep}'",
                    r.id
                )))
            }
            Some((_, p, _)) if &p != path => {
                return Err(StoreError::Other(format!(
                    "unable to register the derivation '{}' as it depends on a realisation of '{dep}' that doesn't match what we have locally",
                    r.id
                )))
            }
            Some(_) => {}
        }
        db.conn_keeping_infos()
            .execute(
                "insert or replace into RealisationsRefs (referrer, realisationReference) values (\
                 (select id from Realisations where drvPath = ? and outputName = ?), \
                 (select id from Realisations where drvPath = ? and outputName = ?))",
                params![r.id.hash_str(), r.id.output, dep.hash_str(), dep.output],
            )
            .map_err(sql("registering a realisation reference", &file))?;
    }
    Ok(())
}
