//! What `simreg` asks of `simreg-learn`, the program linked with libtorch: one request type,
//! sent as JSON on its standard input; the stage's typed summary comes back as JSON on its
//! standard output (progress and errors go to its standard error). The split keeps libtorch's
//! load time (~0.3 s) out of the GDAL-only commands.
use super::align::{AlignRequest, AlignSummary};
use super::enforce::{EnforceStudy, EnforceStudyParams};
use super::predict::PredictSummary;
use super::similarity::{
    SimilarityParams, SimilarityReduceSummary, SimilarityShardSummary, SimilaritySummary,
};
use super::toy1d::{Toy1dParams, Toy1dSummary};
use super::train::{TrainParams, TrainSummary};
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use std::path::PathBuf;

/// `--device`: auto picks CUDA when libtorch sees a GPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceChoice {
    Auto,
    Cpu,
    Cuda,
}

/// One request to `simreg-learn`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "stage", rename_all = "kebab-case")]
pub enum LearnRequest {
    Train(TrainRequest),
    Predict(PredictRequest),
    Similarity(SimilarityRequest),
    SimilarityShard(SimilarityShardRequest),
    SimilarityReduce(SimilarityReduceRequest),
    SimilarityMerge(SimilarityMergeRequest),
    Toy1d(Toy1dRequest),
    EnforceStudy(EnforceStudyRequest),
    Align(AlignRequest),
    Info(InfoRequest),
}

/// A request and the summary it answers with.
pub trait Request: Serialize + Clone + Into<LearnRequest> {
    type Summary: Serialize + DeserializeOwned;
}

/// Trains on the labels in `labels` into `out`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TrainRequest {
    pub labels: PathBuf,
    pub out: PathBuf,
    pub params: TrainParams,
}

/// Predicts with the model in `model` for tiles (their own moving bands) or labelled tiles
/// (their displaced moving tiles, and the RMSE against the labels).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PredictRequest {
    pub model: PathBuf,
    pub tiles: Option<PathBuf>,
    pub labels: Option<PathBuf>,
    pub out: PathBuf,
    pub device: DeviceChoice,
    /// Only shard K of N of the tiles (in order), into a shard folder (`merge predict`).
    #[serde(default)]
    pub shard: Option<crate::util::shard::Shard>,
}

/// The gradient-kernel analysis of the model in `model` on the labelled run it trained on.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SimilarityRequest {
    pub model: PathBuf,
    pub labels: PathBuf,
    pub out: PathBuf,
    pub params: SimilarityParams,
}

/// One shard of the similarity stage's passes: pass 1 (its part of S_A) without `s_a`, pass 2
/// (its rows of N_S) with the reduced S_A of `simreg similarity reduce` in `s_a`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SimilarityShardRequest {
    pub model: PathBuf,
    pub labels: PathBuf,
    pub out: PathBuf,
    pub params: SimilarityParams,
    pub shard: crate::util::shard::Shard,
    pub s_a: Option<PathBuf>,
}

/// Sums the pass-1 shards' partial S_A into `out`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SimilarityReduceRequest {
    pub shards: Vec<PathBuf>,
    pub out: PathBuf,
}

/// Merges the pass-2 shards into the similarity folder `out`, as one process writes it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SimilarityMergeRequest {
    pub shards: Vec<PathBuf>,
    pub out: PathBuf,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Toy1dRequest {
    pub out: PathBuf,
    pub params: Toy1dParams,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EnforceStudyRequest {
    pub labels: PathBuf,
    pub out: PathBuf,
    pub params: EnforceStudyParams,
}

/// What libtorch sees; with a device, that it can be used (an error if not).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct InfoRequest {
    pub device: Option<DeviceChoice>,
}

/// The libtorch part of `simreg info`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TorchInfo {
    pub simreg_learn: String,
    pub libtorch: String,
    pub libtorch_cuda_built: bool,
    pub cuda_available: bool,
    pub cuda_devices: i64,
    pub threads: i32,
    /// The device `--device` resolved to, when one was asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
}

macro_rules! requests {
    ($($req:ident => $variant:ident, $summary:ty;)*) => {
        $(
            impl From<$req> for LearnRequest {
                fn from(r: $req) -> LearnRequest {
                    LearnRequest::$variant(r)
                }
            }
            impl Request for $req {
                type Summary = $summary;
            }
        )*
    };
}

requests! {
    TrainRequest => Train, TrainSummary;
    PredictRequest => Predict, PredictSummary;
    SimilarityRequest => Similarity, SimilaritySummary;
    SimilarityShardRequest => SimilarityShard, SimilarityShardSummary;
    SimilarityReduceRequest => SimilarityReduce, SimilarityReduceSummary;
    SimilarityMergeRequest => SimilarityMerge, SimilaritySummary;
    Toy1dRequest => Toy1d, Toy1dSummary;
    EnforceStudyRequest => EnforceStudy, EnforceStudy;
    AlignRequest => Align, AlignSummary;
    InfoRequest => Info, TorchInfo;
}

impl std::fmt::Display for TorchInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(d) = &self.device {
            writeln!(f, "device: {d}")?;
        }
        write!(
            f,
            "libtorch {} (CUDA built: {}, GPUs visible: {}) | threads {}",
            self.libtorch, self.libtorch_cuda_built, self.cuda_devices, self.threads
        )
    }
}
