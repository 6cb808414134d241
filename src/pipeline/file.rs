//! A pipeline file (`pipelines/*.toml`): which stages a run has, and their parameters.
//!
//! Relative paths inside a pipeline file are relative to the file's own directory, so a
//! pipeline runs the same from any working directory.
use crate::artefacts::align::{BatchParams, Method};
use crate::artefacts::audit::AuditParams;
use crate::artefacts::enforce::EnforceStudyParams;
use crate::artefacts::labels::LabelParams;
use crate::artefacts::similarity::SimilarityParams;
use crate::artefacts::synth::SynthParams;
use crate::artefacts::tiles::{SceneInput, TileParams};
use crate::artefacts::toy1d::Toy1dParams;
use crate::artefacts::train::TrainParams;
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
    pub audit: Option<AuditParams>,
    /// `[batch]`: `simreg batch` over a folder or zip of pairs into `RUN/batch/`.
    pub batch: Option<BatchSection>,
    /// `[report]` (an empty table): `RUN/report/index.html` from every stage's output.
    pub report: Option<ReportSection>,
    /// `[toy1d]`: the paper's 1-D toy (independent of the other stages) into `RUN/toy1d/`.
    pub toy1d: Option<Toy1dParams>,
    /// `[enforce_study]`: the similarity-enforcement study on the run's labels (RUN/labels).
    pub enforce_study: Option<EnforceStudyParams>,
    /// `[sweep]`: run the labelled stages (`[labels]` … `[audit]`) once per label-noise σ (same
    /// tiles, same network) into `RUN/sweep/sigma_<σ>/`, and gather `RUN/noise_sweep.json`.
    pub sweep: Option<SweepSection>,
}

impl Pipeline {
    /// No stage: the start of a pipeline built in code (`simreg adapt`).
    pub fn empty() -> Self {
        Pipeline {
            run: RunSection::default(),
            synth: BTreeMap::new(),
            tile: None,
            labels: None,
            train: None,
            similarity: None,
            audit: None,
            batch: None,
            report: None,
            toy1d: None,
            enforce_study: None,
            sweep: None,
        }
    }
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

/// `[tile]`: the parameters of `simreg tile` (`TileParams`, declared once there), and one
/// `[[tile.scene]]` per scene.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TileSection {
    #[serde(flatten)]
    pub params: TileParams,
    pub scene: Vec<SceneInput>,
    /// `--max-pixels` (not a tiling parameter: it changes no tile).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_pixels: Option<u64>,
}

impl<'de> Deserialize<'de> for TileSection {
    /// The scenes apart, the rest as `TileParams` (which refuses unknown keys: serde's
    /// `flatten` would let them through).
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        use serde::de::Error;
        let mut table = toml::Table::deserialize(d)?;
        let scene = match table.remove("scene") {
            Some(v) => Vec::<SceneInput>::deserialize(v).map_err(D::Error::custom)?,
            None => Vec::new(),
        };
        let max_pixels = take_max_pixels(&mut table).map_err(D::Error::custom)?;
        let params =
            TileParams::deserialize(toml::Value::Table(table)).map_err(D::Error::custom)?;
        Ok(TileSection { params, scene, max_pixels })
    }
}

/// `max_pixels` out of a stage table (`--max-pixels`, which the stage's parameters do not hold).
fn take_max_pixels(table: &mut toml::Table) -> std::result::Result<Option<u64>, String> {
    match table.remove("max_pixels") {
        None => Ok(None),
        Some(v) => crate::raster::bounds::parse_count(&v.to_string())
            .map(Some)
            .map_err(|e| format!("max_pixels: {e}")),
    }
}

/// `[batch]`: the options of `simreg batch` (`BatchParams`), its input and `max_pixels`.
///
/// With `method = "network"` and no `model`, the pairs are aligned with the run's own network:
/// once per σ of a sweep, into `RUN/sweep/sigma_<σ>/batch/`. Without `input`, the pairs are the
/// run's synthetic scenes (`RUN/synth/<name>/`, roles `optical` and `sar`).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BatchSection {
    /// A folder tree or zip archive of pairs (relative to the pipeline file).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input: Option<PathBuf>,
    #[serde(flatten)]
    pub params: BatchParams,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_pixels: Option<u64>,
}

impl BatchSection {
    /// Whether it aligns with the network the run trains (per σ of a sweep).
    pub fn uses_run_model(&self) -> bool {
        self.params.method == Method::Network && self.params.model.is_none()
    }

    /// The batch options, `max_pixels` included.
    pub fn batch_params(&self) -> BatchParams {
        let mut b = self.params.clone();
        if let Some(m) = self.max_pixels {
            b.limits.max_pixels = m;
        }
        b
    }
}

impl<'de> Deserialize<'de> for BatchSection {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        use serde::de::Error;
        let mut table = toml::Table::deserialize(d)?;
        let input = match table.remove("input") {
            None => None,
            Some(v) => Some(PathBuf::deserialize(v).map_err(D::Error::custom)?),
        };
        let max_pixels = take_max_pixels(&mut table).map_err(D::Error::custom)?;
        let roles_given = table.contains_key("reference_role") || table.contains_key("moving_role");
        let mut params =
            BatchParams::deserialize(toml::Value::Table(table)).map_err(D::Error::custom)?;
        if input.is_none() && !roles_given {
            // The run's synthetic scenes: RUN/synth/<name>/{optical,sar}.tif.
            params.reference_role = "optical".into();
            params.moving_role = "sar".into();
        }
        Ok(BatchSection { input, params, max_pixels })
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
                crate::util::text::one_line(e.message()) + &line_of(&text, e.span())
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
        if let Some(b) = &mut p.batch {
            for f in [b.input.as_mut(), b.params.model.as_mut()].into_iter().flatten() {
                if f.is_relative() {
                    *f = normalise(&base.join(&*f));
                }
            }
        }
        if p.tile.is_none()
            && p.batch.is_none()
            && p.labels.is_none()
            && p.train.is_none()
            && p.similarity.is_none()
            && p.audit.is_none()
            && p.report.is_none()
            && p.enforce_study.is_none()
            && p.toy1d.is_none()
            && p.synth.is_empty()
        {
            bail!("pipeline '{}': has no stage to run (no [synth.*], [tile], [labels], [train], [similarity], [audit], [batch], [report], [enforce_study] or [toy1d] table)", path.display());
        }
        p.check().with_context(|| format!("pipeline '{}'", path.display()))?;
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

    /// Every table's parameters, checked before any stage runs: a pipeline that would fail in
    /// a late stage on a bad value fails before the first.
    fn check(&self) -> Result<()> {
        for (name, s) in &self.synth {
            s.check().with_context(|| format!("[synth.{name}]"))?;
        }
        if let Some(t) = &self.tile {
            t.params.check().context("[tile]")?;
        }
        if let Some(l) = &self.labels {
            l.check().context("[labels]")?;
        }
        if let Some(t) = &self.train {
            t.check().context("[train]")?;
        }
        if let Some(t) = &self.toy1d {
            t.check().context("[toy1d]")?;
        }
        if let Some(a) = &self.audit {
            a.check().context("[audit]")?;
        }
        if let Some(b) = &self.batch {
            if b.input.is_none() && self.synth.is_empty() {
                bail!("[batch] has no input (a folder or zip of pairs) and the pipeline no [synth.*] scenes to align");
            }
            if b.uses_run_model() && self.train.is_none() {
                bail!("[batch]: method = \"network\" needs a model = \"RUN/train\" or a [train] table (the run's own network)");
            }
            if b.params.jobs == 0 {
                bail!("[batch]: jobs must be at least 1");
            }
            crate::align::batch::check_pattern(&b.params).context("[batch]")?;
            crate::align::batch::check_max_shift(b.params.max_shift).context("[batch]")?;
        }
        if let Some(s) = &self.sweep {
            if self.labels.is_none() || self.train.is_none() {
                bail!("[sweep] needs [labels] and [train] tables (the per-σ template)");
            }
            if s.sigma.is_empty() {
                bail!(
                    "[sweep]: sigma is empty (give the label-noise σ of each run, e.g. [0, 2, 4])"
                );
            }
            if let Some(bad) = s.sigma.iter().find(|v| !(**v >= 0.0 && v.is_finite())) {
                bail!("[sweep]: sigma {bad} is not a non-negative number of pixels");
            }
        }
        Ok(())
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
        assert_eq!(demo.audit, Some(AuditParams::default()));
        // The demo aligns its synthetic scene with each σ's network.
        let b = demo.batch.as_ref().unwrap();
        assert!(b.uses_run_model() && b.input.is_none());
        assert_eq!(
            (b.params.reference_role.as_str(), b.params.moving_role.as_str()),
            ("optical", "sar")
        );
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
        assert_eq!(four.train, sweep.train, "the sweep's settings, twice the tiles");
        assert_eq!(eight.train, sweep.train, "the sweep's settings, four times the tiles");
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
        // [batch]: unknown keys, a pattern that cannot pair, nothing to align, no network.
        for (text, says) in [
            ("[batch]\ninput = \"x\"\npatern = \"{role}.tif\"\n", "patern"),
            ("[batch]\ninput = \"x\"\npattern = \"a.tif\"\n", "{role}"),
            ("[batch]\nmethod = \"phase-correlation\"\n", "no input"),
            ("[batch]\ninput = \"x\"\nmethod = \"network\"\n", "[train]"),
        ] {
            std::fs::write(&f, text).unwrap();
            let e = format!("{:#}", Pipeline::load(&f).unwrap_err());
            assert!(e.contains("p.toml") && e.contains(says), "{text}: {e}");
        }
        // Its input and model are relative to the file, max_pixels sits beside them.
        std::fs::write(&f, "[batch]\ninput = \"pairs.zip\"\nmethod = \"network\"\nmodel = \"m/train\"\nmax_pixels = 1e6\n").unwrap();
        let p = Pipeline::load(&f).unwrap();
        let b = p.batch.unwrap();
        let base = std::fs::canonicalize(bad.path()).unwrap();
        assert_eq!(b.input, Some(base.join("pairs.zip")));
        assert_eq!(b.params.model, Some(base.join("m/train")));
        assert_eq!(b.batch_params().limits.max_pixels, 1_000_000);
        assert_eq!(b.params.reference_role, "reference", "an input keeps batch's own roles");
    }

    #[test]
    fn normalise_drops_dot_and_dotdot() {
        assert_eq!(normalise(Path::new("/a/b/../c/./d")), PathBuf::from("/a/c/d"));
        assert_eq!(normalise(Path::new("/a/../../x")), PathBuf::from("/x"));
        assert_eq!(normalise(Path::new("../x")), PathBuf::from("../x"));
    }
}
