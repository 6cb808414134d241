//! Pipelines: the stages of a run chained by one TOML file (see `pipelines/`).
//!
//! Relative paths inside a pipeline file are relative to the file's own directory, so a
//! pipeline runs the same from any working directory.
use crate::labels::{self, LabelOptions, LabelParams, LabelSummary};
use crate::learn::{
    self, SimilarityParams, SimilaritySummary, Toy1dParams, Toy1dSummary, TrainParams, TrainSummary,
};
use crate::synth::{self, SynthParams, SynthSummary};
use crate::tiling::manifest::ModalityKind;
use crate::tiling::prepare::ModalityInput;
use crate::tiling::{
    self, manifest::TileParams, plan::EdgePolicy, SceneInput, TileOptions, TileSummary,
};
use crate::util::atomic;
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pipeline {
    #[serde(default)]
    pub run: RunSection,
    /// `[synth.<name>]`: synthetic scenes generated into `RUN/synth/<name>/`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub synth: BTreeMap<String, SynthParams>,
    pub tile: Option<TileSection>,
    /// `[labels]`: displacement fields and label noise (reads the run's tiles).
    pub labels: Option<LabelParams>,
    /// `[train]`: the network trained on the run's labels.
    pub train: Option<TrainParams>,
    /// `[similarity]`: the gradient-kernel analysis of the trained model.
    pub similarity: Option<SimilarityParams>,
    /// `[audit]`: label-free error estimates and the label audit (needs `[similarity]`'s output).
    pub audit: Option<crate::audit::AuditParams>,
    /// `[report]` (an empty table): `RUN/report/index.html` from every stage's output.
    pub report: Option<ReportSection>,
    /// `[toy1d]`: the paper's 1-D toy (independent of the other stages) into `RUN/toy1d/`.
    pub toy1d: Option<Toy1dParams>,
    /// `[enforce_study]`: the similarity-enforcement study on the run's labels (RUN/labels).
    pub enforce_study: Option<crate::learn::EnforceStudyParams>,
    /// `[sweep]`: run `[labels]` and `[train]` once per label-noise σ (same tiles, same
    /// network) into `RUN/sweep/sigma_<σ>/`, and gather `RUN/noise_sweep.json`.
    pub sweep: Option<SweepSection>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportSection {}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SweepSection {
    pub sigma: Vec<f64>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunSection {
    /// Run directory; `runs/<pipeline file stem>` under the working directory when absent.
    pub out: Option<PathBuf>,
}

/// `[tile]`: the parameters of `simreg tile`, and one `[[tile.scene]]` per scene.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TileSection {
    #[serde(default = "default_tile_size")]
    pub tile_size: usize,
    #[serde(default = "default_overlap")]
    pub overlap: usize,
    #[serde(default = "default_min_valid")]
    pub min_valid: f64,
    #[serde(default = "default_edge")]
    pub edge: EdgePolicy,
    #[serde(default)]
    pub deflate: bool,
    pub scene: Vec<SceneInput>,
}

pub fn default_tile_size() -> usize {
    128
}
pub fn default_overlap() -> usize {
    32
}
pub fn default_min_valid() -> f64 {
    0.9
}
pub fn default_edge() -> EdgePolicy {
    EdgePolicy::Shift
}

impl TileSection {
    pub fn params(&self) -> TileParams {
        TileParams {
            tile_size: self.tile_size,
            overlap: self.overlap,
            min_valid: self.min_valid,
            edge: self.edge,
            deflate: self.deflate,
        }
    }
}

impl Pipeline {
    /// Reads and checks a pipeline file, making its relative paths absolute.
    pub fn load(path: &Path) -> Result<Pipeline> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("pipeline '{}': cannot read", path.display()))?;
        let mut p: Pipeline = toml::from_str(&text).map_err(|e| {
            anyhow::anyhow!(
                "pipeline '{}': {}",
                path.display(),
                crate::raster::one_line(e.message()) + &line_of(&text, e.span())
            )
        })?;
        let base = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let base = std::fs::canonicalize(base).with_context(|| {
            format!("pipeline '{}': cannot resolve its directory", path.display())
        })?;
        if let Some(out) = &mut p.run.out {
            if out.is_relative() {
                *out = normalise(&base.join(&*out));
            }
        }
        if let Some(tile) = &mut p.tile {
            if tile.scene.is_empty() {
                bail!("pipeline '{}': [tile] has no [[tile.scene]]", path.display());
            }
            for s in &mut tile.scene {
                for m in [Some(&mut s.reference), Some(&mut s.moving), s.map.as_mut()]
                    .into_iter()
                    .flatten()
                {
                    for f in &mut m.files {
                        if f.is_relative() {
                            *f = normalise(&base.join(&*f));
                        }
                    }
                }
            }
        }
        if p.tile.is_none()
            && p.labels.is_none()
            && p.train.is_none()
            && p.similarity.is_none()
            && p.audit.is_none()
            && p.report.is_none()
            && p.enforce_study.is_none()
            && p.toy1d.is_none()
            && p.synth.is_empty()
        {
            bail!("pipeline '{}': has no stage to run (no [synth.*], [tile], [labels], [train], [similarity], [audit], [report], [enforce_study] or [toy1d] table)", path.display());
        }
        if let Some(t) = &p.toy1d {
            t.check().with_context(|| format!("pipeline '{}': [toy1d]", path.display()))?;
        }
        for (name, s) in &p.synth {
            s.check().with_context(|| format!("pipeline '{}': [synth.{name}]", path.display()))?;
        }
        if p.sweep.is_some() && (p.labels.is_none() || p.train.is_none()) {
            bail!(
                "pipeline '{}': [sweep] needs [labels] and [train] tables (the per-σ template)",
                path.display()
            );
        }
        if let Some(tile) = &p.tile {
            for s in &tile.scene {
                match &s.synth {
                    Some(name) if !p.synth.contains_key(name) => bail!("pipeline '{}': a [[tile.scene]] names synth = \"{name}\" but there is no [synth.{name}]", path.display()),
                    Some(_) if !s.reference.files.is_empty() || !s.moving.files.is_empty() => bail!("pipeline '{}': a [[tile.scene]] has both synth and reference/moving files", path.display()),
                    None if s.reference.files.is_empty() || s.moving.files.is_empty() => bail!("pipeline '{}': every [[tile.scene]] needs reference and moving files (or synth = \"name\")", path.display()),
                    _ => {}
                }
            }
        }
        Ok(p)
    }
}

/// `a/b/../c` → `a/c`, without touching the file system (the path may not exist yet).
fn normalise(p: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::ParentDir
                if matches!(out.components().next_back(), Some(Component::Normal(_))) =>
            {
                out.pop();
            }
            Component::ParentDir
                if matches!(out.components().next_back(), Some(Component::RootDir)) => {}
            Component::CurDir => {}
            c => out.push(c),
        }
    }
    out
}

fn line_of(text: &str, span: Option<std::ops::Range<usize>>) -> String {
    span.map(|s| format!(" (line {})", text[..s.start.min(text.len())].lines().count().max(1)))
        .unwrap_or_default()
}

/// What `simreg run` reports: one entry per stage that ran.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunSummary {
    pub run_dir: PathBuf,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub synth: Vec<SynthSummary>,
    pub tile: Option<TileSummary>,
    pub labels: Option<LabelSummary>,
    pub train: Option<TrainSummary>,
    pub similarity: Option<SimilaritySummary>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit: Option<crate::audit::AuditSummary>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub toy1d: Option<Toy1dSummary>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sweep: Vec<TrainSummary>,
}

/// Runs every stage the pipeline has, in order, into `run_dir`; `threads` is passed on to the
/// learning stages (`simreg-learn --threads`).
pub fn run(
    p: &Pipeline,
    run_dir: &Path,
    quiet: bool,
    threads: Option<usize>,
) -> Result<RunSummary> {
    atomic::create_dir(run_dir)?;
    // The effective configuration (defaults filled in, absolute paths), for provenance.
    let effective = toml::to_string_pretty(p).context("cannot serialise the pipeline")?;
    atomic::write_bytes(&run_dir.join("pipeline.toml"), effective.as_bytes())?;
    let mut summary = RunSummary {
        run_dir: run_dir.to_path_buf(),
        synth: Vec::new(),
        tile: None,
        labels: None,
        train: None,
        similarity: None,
        audit: None,
        toy1d: None,
        sweep: Vec::new(),
    };
    for (name, params) in &p.synth {
        let s = synth::ensure(params, &run_dir.join("synth").join(name))?;
        summary.synth.push(s);
    }
    if let Some(t) = &p.tile {
        let scenes: Vec<SceneInput> = t.scene.iter().map(|s| resolve_synth(s, run_dir)).collect();
        summary.tile = Some(tiling::run(
            &scenes,
            &t.params(),
            &run_dir.join("tiles"),
            &TileOptions { quiet },
        )?);
    }
    // Independent of the other stages (before the sweep, which ends the run).
    if let Some(t) = &p.toy1d {
        summary.toy1d = Some(learn::run_toy1d(&run_dir.join("toy1d"), t, quiet, threads)?);
    }
    if let (Some(sweep), Some(l), Some(t)) = (&p.sweep, &p.labels, &p.train) {
        for &sigma in &sweep.sigma {
            let dir = run_dir.join("sweep").join(format!("sigma_{sigma}"));
            let mut lp = l.clone();
            lp.noise.sigma = sigma;
            if lp.noise.model == crate::labels::noise::NoiseModel::None && sigma > 0.0 {
                lp.noise.model = crate::labels::noise::NoiseModel::Iid;
            }
            if !quiet {
                eprintln!("noise sweep: σ = {sigma} px");
            }
            atomic::create_dir(&dir)?;
            labels::run(&run_dir.join("tiles"), &dir.join("labels"), &lp, &LabelOptions { quiet })?;
            record_stage(&dir.join("labels"), "labels", &lp)?;
            summary.sweep.push(learn::run_train(
                &dir.join("labels"),
                &dir.join("train"),
                t,
                quiet,
                threads,
            )?);
            // The later stages per σ, when the pipeline has them.
            if let Some(s) = &p.similarity {
                learn::run_similarity(
                    &dir.join("train"),
                    &dir.join("labels"),
                    &dir.join("similarity"),
                    s,
                    quiet,
                    threads,
                )?;
            }
            if let Some(a) = &p.audit {
                crate::audit::run(&dir, &dir.join("audit"), a, quiet)?;
            }
        }
        atomic::write_json(&run_dir.join("noise_sweep.json"), &summary.sweep)?;
        if p.report.is_some() {
            let r = crate::report::run(run_dir, &run_dir.join("report"))?;
            if !quiet {
                eprintln!("report: {}", r.index.display());
            }
        }
        return Ok(summary);
    }
    if let Some(l) = &p.labels {
        summary.labels = Some(labels::run(
            &run_dir.join("tiles"),
            &run_dir.join("labels"),
            l,
            &LabelOptions { quiet },
        )?);
    }
    if let Some(t) = &p.train {
        summary.train = Some(learn::run_train(
            &run_dir.join("labels"),
            &run_dir.join("train"),
            t,
            quiet,
            threads,
        )?);
    }
    if let Some(e) = &p.enforce_study {
        learn::run_enforce_study(&run_dir.join("labels"), run_dir, e, quiet, threads)?;
    }
    if let Some(s) = &p.similarity {
        summary.similarity = Some(learn::run_similarity(
            &run_dir.join("train"),
            &run_dir.join("labels"),
            &run_dir.join("similarity"),
            s,
            quiet,
            threads,
        )?);
    }
    if let Some(a) = &p.audit {
        summary.audit = Some(crate::audit::run(run_dir, &run_dir.join("audit"), a, quiet)?);
    }
    if p.report.is_some() {
        let r = crate::report::run(run_dir, &run_dir.join("report"))?;
        if !quiet {
            eprintln!("report: {}", r.index.display());
        }
    }
    Ok(summary)
}

/// A `[[tile.scene]]` with `synth = "name"` becomes the files of `RUN/synth/name/`.
fn resolve_synth(s: &SceneInput, run_dir: &Path) -> SceneInput {
    let Some(name) = &s.synth else { return s.clone() };
    let dir = run_dir.join("synth").join(name);
    let one =
        |f: &str, kind| ModalityInput { files: vec![dir.join(f)], bands: None, kind: Some(kind) };
    SceneInput {
        name: Some(s.name.clone().unwrap_or_else(|| name.clone())),
        reference: one("optical.tif", ModalityKind::Optical),
        moving: one("sar.tif", ModalityKind::SarDb),
        map: Some(one("map.geojson", ModalityKind::Map)),
        synth: None,
    }
}

/// Records a stage run from the command line in the run's effective pipeline file
/// (`<stage output>/../pipeline.toml`), as the `[stage]` table.
pub fn record_stage(stage_out: &Path, stage: &str, params: &impl Serialize) -> Result<()> {
    let run_dir =
        stage_out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let path = run_dir.join("pipeline.toml");
    let mut table: toml::Table = match std::fs::read_to_string(&path) {
        Ok(text) => toml::from_str(&text)
            .with_context(|| format!("pipeline '{}': not valid TOML", path.display()))?,
        Err(_) => toml::Table::new(),
    };
    table.insert(
        stage.to_string(),
        toml::Value::try_from(params).context("cannot record the stage's parameters")?,
    );
    atomic::write_bytes(&path, toml::to_string_pretty(&table)?.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundled_pipelines_load_with_their_later_stages() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("pipelines");
        let demo = Pipeline::load(&dir.join("demo.toml")).unwrap();
        assert!(
            demo.train.is_some()
                && demo.similarity.is_some()
                && demo.audit.is_some()
                && demo.report.is_some()
        );
        assert_eq!(demo.audit, Some(crate::audit::AuditParams::default()));
        let outliers = Pipeline::load(&dir.join("audit_outliers.toml")).unwrap();
        let noise = &outliers.labels.as_ref().unwrap().noise;
        assert_eq!((noise.sigma, noise.outliers, noise.outlier_magnitude), (2.0, 0.05, 12.0));
        let sweep = Pipeline::load(&dir.join("noise_sweep.toml")).unwrap();
        assert!(sweep.sweep.is_some() && sweep.audit.is_some() && sweep.report.is_some());
        let rep = Pipeline::load(&dir.join("noise_sweep_replicate.toml")).unwrap();
        assert_eq!(
            rep.train,
            sweep.train.as_ref().map(|t| TrainParams { seed: 2, ..t.clone() }),
            "the sweep's settings, another seed"
        );
        assert_eq!(rep.sweep.as_ref().map(|s| s.sigma.clone()), Some(vec![1.0, 2.0, 4.0, 8.0]));
        assert!(
            rep.synth.values().all(|s| sweep.synth.values().all(|o| o.seed != s.seed)),
            "new scenes"
        );
        let four = Pipeline::load(&dir.join("noise_sweep_4scenes.toml")).unwrap();
        assert_eq!(
            (four.synth.len(), four.sweep.as_ref().map(|s| s.sigma.clone())),
            (4, Some(vec![0.0, 4.0]))
        );
        let eight = Pipeline::load(&dir.join("noise_sweep_8scenes.toml")).unwrap();
        assert_eq!(
            (eight.synth.len(), eight.sweep.as_ref().map(|s| s.sigma.clone())),
            (8, Some(vec![0.0, 4.0]))
        );
        assert_eq!(
            eight.train,
            four.train.map(|t| TrainParams { epochs: 40, patience: 40, ..t }),
            "the four-scene settings, 40 epochs"
        );
        let study = Pipeline::load(&dir.join("enforce_study.toml")).unwrap();
        let e = study.enforce_study.as_ref().unwrap();
        assert_eq!((e.seeds, e.arms.len()), (10, 3), "the study: at least 10 seeds, every arm");
        assert!(study.report.is_some() && study.train.is_none());
        // A stage table with an unknown key is refused, naming the file.
        let bad = tempfile::tempdir().unwrap();
        let f = bad.path().join("p.toml");
        std::fs::write(&f, "[audit]\nthreshhold = 3\n").unwrap();
        let e = Pipeline::load(&f).unwrap_err().to_string();
        assert!(e.contains("p.toml") && e.contains("threshhold"), "{e}");
    }

    #[test]
    fn normalise_drops_dot_and_dotdot() {
        assert_eq!(normalise(Path::new("/a/b/../c/./d")), PathBuf::from("/a/c/d"));
        assert_eq!(normalise(Path::new("/a/../../x")), PathBuf::from("/x"));
        assert_eq!(normalise(Path::new("../x")), PathBuf::from("../x"));
    }
}
