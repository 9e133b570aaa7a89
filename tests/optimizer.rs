//! The refinement optimizer against torch.optim.AdamW (tools/make_optim_fixture.py) on a real
//! `Refiner`: parameter groups, per-parameter steps, the fresh stage-3 optimizer, the EMA and
//! checkpoint resume at and after the stage boundary; and a table of the intended group of every
//! parameter path of real encoders (pre-/post-norm, LayerScale) and heads.

mod common;
use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::{Device, Tensor, TensorData};
use mimr::host::{TensorMap, host};
use mimr::model::vit::VitConfig;
use mimr::refine::checkpoint;
use mimr::refine::config::RefineConfig;
use mimr::refine::optim::param_values;
use mimr::refine::trainer::Trainer;
use std::collections::BTreeSet;
use std::path::Path;

/// The fixture's hyper-parameters (metadata `hp`).
#[derive(serde::Deserialize)]
struct Hp {
    lrs: Vec<f64>,
    stages: Vec<u8>,
    layer_decay: f64,
    encoder_weight_decay: f64,
    head_weight_decay_stage2: f64,
    head_weight_decay_stage3: f64,
    ema_momentum: f64,
    depth: usize,
}

struct Fixture {
    t: TensorMap,
    hp: Hp,
}

fn fixture() -> Fixture {
    let f = mimr::checkpoint::st::read(&common::fixture("optim_adamw.safetensors")).unwrap();
    let hp = serde_json::from_str(&f.metadata["hp"]).unwrap();
    Fixture { t: f.tensors, hp }
}

/// The CPU example config with `sets` applied (data and checkpoint paths are not opened).
fn config(sets: &[String]) -> RefineConfig {
    let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/cpu_fashion_mnist.toml");
    RefineConfig::load(&base, sets).unwrap()
}

/// A trainer on the debug ViT with two debug heads, set to the fixture's hyper-parameters.
fn fixture_trainer(hp: &Hp) -> Trainer {
    let cfg = config(&[
        "heads.size=\"debug\"".into(),
        "heads.main=true".into(),
        "heads.blocks=[0]".into(),
        format!("stage2.head_weight_decay={}", hp.head_weight_decay_stage2),
        format!("stage2.encoder_weight_decay={}", 0.9), // the encoder is frozen: unused
        format!("stage3.head_weight_decay={}", hp.head_weight_decay_stage3),
        format!("stage3.encoder_weight_decay={}", hp.encoder_weight_decay),
        format!("stage3.layer_decay={}", hp.layer_decay),
        "stage3.freeze_blocks=0".into(),
        format!("run.ema_momentum={}", hp.ema_momentum),
    ]);
    let vit = VitConfig::preset("debug", 16).unwrap();
    assert_eq!(vit.depth, hp.depth);
    Trainer::new(cfg, vit.clone(), &vit.random_tensors(0), Device::flex()).unwrap()
}

/// One float parameter of a module: path, rank and whether it is trained.
struct Found {
    path: String,
    ndim: usize,
    trained: bool,
}

fn params<M: Module>(m: &M) -> Vec<Found> {
    struct V(Vec<String>, Vec<Found>);
    impl ModuleVisitor for V {
        fn enter_module(&mut self, n: &str, _c: &str) {
            self.0.push(n.to_string());
        }
        fn exit_module(&mut self, _n: &str, _c: &str) {
            self.0.pop();
        }
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
            let trained = p.val().is_require_grad();
            self.1.push(Found {
                path: self.0.join("."),
                ndim: D,
                trained,
            });
        }
    }
    let mut v = V(Vec::new(), Vec::new());
    m.visit(&mut v);
    v.1
}

/// Replaces every trained parameter by the fixture's `w0.<path>` (same id, still trained).
fn set_initial(t: &mut Trainer, fx: &TensorMap) {
    struct Set<'a>(Vec<String>, &'a TensorMap);
    impl ModuleMapper for Set<'_> {
        fn enter_module(&mut self, n: &str, _c: &str) {
            self.0.push(n.to_string());
        }
        fn exit_module(&mut self, _n: &str, _c: &str) {
            self.0.pop();
        }
        fn map_float<const D: usize>(&mut self, p: Param<Tensor<D>>) -> Param<Tensor<D>> {
            let Some(w) = self.1.get(&format!("w0.{}", self.0.join("."))) else {
                return p;
            };
            let (id, old, mapper) = p.consume();
            let data = TensorData::new(w.data.clone(), w.shape.clone());
            let new = Tensor::<D>::from_data(data, &old.device());
            assert_eq!(new.dims(), old.dims(), "shape of {}", self.0.join("."));
            let new = if old.is_require_grad() {
                new.require_grad()
            } else {
                new
            };
            Param::from_mapped_value(id, new, mapper)
        }
    }
    let model = t.model.take().unwrap().map(&mut Set(Vec::new(), fx));
    t.ema = model.encoder.valid();
    t.model = Some(model);
}

/// The fixture's gradients of step `s`, registered by parameter id on the inner device.
fn gradients(t: &Trainer, fx: &TensorMap, s: usize) -> GradientsParams {
    struct G<'a>(Vec<String>, &'a TensorMap, usize, GradientsParams);
    impl ModuleVisitor for G<'_> {
        fn enter_module(&mut self, n: &str, _c: &str) {
            self.0.push(n.to_string());
        }
        fn exit_module(&mut self, _n: &str, _c: &str) {
            self.0.pop();
        }
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
            let key = format!("grad.{}.{}", self.2, self.0.join("."));
            if let Some(g) = self.1.get(&key) {
                let data = TensorData::new(g.data.clone(), g.shape.clone());
                self.3
                    .register::<D>(p.id, Tensor::from_data(data, &Device::flex()));
            }
        }
    }
    let mut g = G(Vec::new(), fx, s, GradientsParams::new());
    t.model.as_ref().unwrap().visit(&mut g);
    g.3
}

/// Largest |a − b| (∞ for a NaN or a length mismatch).
fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    if a.len() != b.len() {
        return f32::INFINITY;
    }
    let d = a.iter().zip(b).map(|(x, y)| (x - y).abs());
    d.fold(
        0.0,
        |m, v| if v.is_nan() { f32::INFINITY } else { m.max(v) },
    )
}

/// Largest |mimr − PyTorch| over the weights after step `s` and, in stage 3, the EMA.
fn error_after(t: &Trainer, fx: &TensorMap, s: usize) -> f32 {
    let mut worst = 0.0f32;
    let w = param_values(t.model.as_ref().unwrap());
    let e = param_values(&t.ema);
    for (key, want) in fx {
        let got = if let Some(p) = key.strip_prefix(&format!("w.{s}.")) {
            &w[p]
        } else if let Some(p) = key.strip_prefix(&format!("ema.{s}.encoder.")) {
            &e[p]
        } else {
            continue;
        };
        let d = max_diff(&host(got.clone()).unwrap().data, &want.data);
        assert!(d <= 1e-6, "step {s} {key}: max abs diff {d}");
        worst = worst.max(d);
    }
    worst
}

/// Runs steps `from..to` of the fixture on `t`; the worst error.
fn run(t: &mut Trainer, fx: &Fixture, from: usize, to: usize) -> f32 {
    let mut worst = 0.0f32;
    for s in from..to {
        let g = gradients(t, &fx.t, s);
        t.update(g, fx.hp.stages[s], fx.hp.lrs[s]).unwrap();
        worst = worst.max(error_after(t, &fx.t, s));
    }
    worst
}

#[test]
fn the_fixture_holds_exactly_the_trained_parameters_of_the_real_model() {
    let fx = fixture();
    let t = fixture_trainer(&fx.hp);
    let trained: BTreeSet<String> = params(t.model.as_ref().unwrap())
        .into_iter()
        .filter(|p| p.trained)
        .map(|p| p.path)
        .collect();
    let stored: BTreeSet<String> =
        fx.t.keys()
            .filter_map(|k| k.strip_prefix("w0."))
            .map(String::from)
            .collect();
    assert_eq!(trained, stored);
}

#[test]
fn adamw_groups_stage_handoff_and_ema_match_pytorch() {
    let fx = fixture();
    let mut t = fixture_trainer(&fx.hp);
    set_initial(&mut t, &fx.t);
    let worst = run(&mut t, &fx, 0, fx.hp.lrs.len());
    eprintln!("optimizer fixture: max abs diff {worst:e}");
    // the stage-3 optimizer's own steps: what had no gradient in step 3 is one behind
    assert_eq!(t.opt.step_of("heads.1.projector.0.linear.weight"), Some(2));
    assert_eq!(t.opt.step_of("encoder.blocks.0.attn.qkv.weight"), Some(2));
    assert_eq!(t.opt.step_of("encoder.blocks.1.attn.qkv.weight"), Some(3));
    assert_eq!(t.opt.step_of("heads.0.predictor.1.bn.beta"), Some(3));
}

#[test]
fn resume_at_the_stage_boundary_and_inside_stage_3_matches_pytorch() {
    let fx = fixture();
    let n = fx.hp.lrs.len();
    for stop in [3, 4] {
        let mut a = fixture_trainer(&fx.hp);
        set_initial(&mut a, &fx.t);
        run(&mut a, &fx, 0, stop);
        let dir = tempfile::tempdir().unwrap();
        checkpoint::save(&a, dir.path()).unwrap();
        let mut b = fixture_trainer(&fx.hp);
        checkpoint::load(&mut b, dir.path()).unwrap();
        assert_eq!(b.opt.steps(), a.opt.steps(), "steps restored (stop {stop})");
        assert_eq!(b.opt_stage, a.opt_stage);
        let worst = run(&mut b, &fx, stop, n);
        eprintln!("resumed after step {stop}: max abs diff {worst:e}");
    }
}

/// Rewrites a checkpoint's `state.json` as mimr wrote it before per-parameter steps: one global
/// `opt_step`, no `opt_steps` or `opt_stage`.
fn make_old_format(dir: &Path, global: u64) {
    let path = dir.join("state.json");
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let o = v.as_object_mut().unwrap();
    assert!(o.remove("opt_steps").is_some() && o.remove("opt_stage").is_some());
    o.insert("opt_step".into(), global.into());
    std::fs::write(&path, serde_json::to_string(&v).unwrap()).unwrap();
}

#[test]
fn old_checkpoints_with_one_global_step_load() {
    let fx = fixture();
    for (stop, stage) in [(3, 2), (5, 3)] {
        let mut a = fixture_trainer(&fx.hp);
        set_initial(&mut a, &fx.t);
        run(&mut a, &fx, 0, stop);
        let dir = tempfile::tempdir().unwrap();
        checkpoint::save(&a, dir.path()).unwrap();
        make_old_format(dir.path(), stop as u64);
        let mut b = fixture_trainer(&fx.hp);
        checkpoint::load(&mut b, dir.path()).unwrap();
        let steps = b.opt.steps();
        assert_eq!(
            steps.keys().collect::<Vec<_>>(),
            a.opt.steps().keys().collect::<Vec<_>>()
        );
        assert!(steps.values().all(|&s| s == stop as u64), "{steps:?}");
        assert_eq!(b.opt_stage, stage, "stage inferred from the moments");
    }
}

/// The error of loading a 2-step checkpoint after `edit` changed its `state.json` and tensors.
fn load_error(edit: impl Fn(&mut serde_json::Value, &mut TensorMap)) -> String {
    let fx = fixture();
    let mut a = fixture_trainer(&fx.hp);
    set_initial(&mut a, &fx.t);
    run(&mut a, &fx, 0, 2);
    let dir = tempfile::tempdir().unwrap();
    checkpoint::save(&a, dir.path()).unwrap();
    let (json, st) = (
        dir.path().join("state.json"),
        dir.path().join("state.safetensors"),
    );
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let mut t = mimr::checkpoint::st::read(&st).unwrap().tensors;
    edit(&mut v, &mut t);
    std::fs::write(&json, serde_json::to_string(&v).unwrap()).unwrap();
    mimr::checkpoint::st::write(&st, &t, Default::default()).unwrap();
    let err = checkpoint::load(&mut fixture_trainer(&fx.hp), dir.path()).unwrap_err();
    format!("{err:#}")
}

#[test]
fn inconsistent_optimizer_state_is_refused_with_the_parameter_named() {
    let p = "heads.0.projector.0.bn.gamma";
    let msg = load_error(|v, _| {
        assert!(v["opt_steps"].as_object_mut().unwrap().remove(p).is_some());
    });
    assert!(
        msg.contains(&format!("step count of `{p}` missing")),
        "{msg}"
    );
    let msg = load_error(|_, t| {
        assert!(t.remove(&format!("opt.v.{p}")).is_some());
    });
    assert!(msg.contains(&format!("moment `v.{p}` missing")), "{msg}");
    let msg = load_error(|v, t| {
        for m in ["m", "v"] {
            let x = t.remove(&format!("opt.{m}.{p}")).unwrap();
            t.insert(format!("opt.{m}.heads.0.bogus"), x);
        }
        let steps = v["opt_steps"].as_object_mut().unwrap();
        let n = steps.remove(p).unwrap();
        steps.insert("heads.0.bogus".into(), n);
    });
    assert!(
        msg.contains("`heads.0.bogus`, which the model lacks"),
        "{msg}"
    );
    let msg = load_error(|_, t| {
        for m in ["m", "v"] {
            let x = t.remove(&format!("opt.{m}.{p}")).unwrap();
            let short = mimr::host::HostTensor::new(vec![3], x.data[..3].to_vec()).unwrap();
            t.insert(format!("opt.{m}.{p}"), short);
        }
    });
    assert!(
        msg.contains(&format!("`{p}` has 3 values, the parameter 16")),
        "{msg}"
    );
}

/// The EMA export of a small Fashion-MNIST refinement (6 stage-2 + 6 stage-3 steps) in `dir`,
/// run to `max_steps` (0 = all) and then, if stopped early, resumed to the end.
fn refine_small(dir: &Path, stop: u64) -> TensorMap {
    let mut sets: Vec<String> = [
        "data.limit=192",
        "data.batch_size=32",
        "stage2.epochs=1",
        "stage3.epochs=1",
        "heads.queue_size=256",
        "run.snapshot_every=0",
        "run.device=\"cpu\"",
        "data.workers=2",
    ]
    .map(String::from)
    .to_vec();
    sets.push(format!("run.dir=\"{}\"", dir.display()));
    sets.push(format!(
        "data.train=\"{}\"",
        common::fashion_mnist().display()
    ));
    let control = mimr::train::Control::default();
    let mut first = sets.clone();
    first.push(format!("run.max_steps={stop}"));
    let out = mimr::refine::run::refine(config(&first), &control).unwrap();
    assert_eq!(out.steps, if stop == 0 { 12 } else { stop });
    if stop > 0 {
        let out = mimr::refine::run::refine(config(&sets), &control).unwrap();
        assert_eq!((out.resumed_from, out.steps), (Some(stop), 12));
    }
    let ema = dir.join("encoder_ema.safetensors");
    mimr::checkpoint::st::read(&ema).unwrap().tensors
}

#[test]
fn a_run_resumed_exactly_at_the_stage_boundary_is_bit_identical() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let whole = refine_small(a.path(), 0);
    let resumed = refine_small(b.path(), 6);
    assert_eq!(
        whole.keys().collect::<Vec<_>>(),
        resumed.keys().collect::<Vec<_>>()
    );
    for (k, v) in &whole {
        assert!(
            v.data == resumed[k].data,
            "EMA tensor {k} differs after resume"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Parameter groups: the intended rule, stated independently of `refine::groups`.
// ---------------------------------------------------------------------------------------------

/// Where a parameter sits for layer decay (method.md §1.5).
#[derive(Clone, Copy, Debug, PartialEq)]
enum Layer {
    /// Patch embed, CLS token, `embed_norm`: γ^(depth+1); frozen with any `freeze_blocks`.
    Stem,
    /// Block `j` (the first `#` of the pattern): γ^(depth−j); frozen if j < freeze_blocks.
    Block,
    /// The final norm: 1.
    Final,
    /// ID heads: 1 in both stages.
    Head,
}

/// Which weight decay a parameter gets (method.md §4.2: matrices only).
#[derive(Clone, Copy, Debug, PartialEq)]
enum Decay {
    No,
    Encoder,
    Head,
}

/// Every float parameter path of a `Refiner` (`#` = an index): trained ones with their group,
/// `None` for what is not trained (fixed positional embedding, BatchNorm running statistics).
const TABLE: &[(&str, Option<(Layer, Decay)>)] = &[
    ("encoder.patch_weight", Some((Layer::Stem, Decay::Encoder))),
    ("encoder.patch_bias", Some((Layer::Stem, Decay::No))),
    ("encoder.cls_token", Some((Layer::Stem, Decay::No))),
    ("encoder.pos_embed", None),
    ("encoder.embed_norm.gamma", Some((Layer::Stem, Decay::No))),
    ("encoder.embed_norm.beta", Some((Layer::Stem, Decay::No))),
    (
        "encoder.blocks.#.norm1.gamma",
        Some((Layer::Block, Decay::No)),
    ),
    (
        "encoder.blocks.#.norm1.beta",
        Some((Layer::Block, Decay::No)),
    ),
    (
        "encoder.blocks.#.attn.qkv.weight",
        Some((Layer::Block, Decay::Encoder)),
    ),
    (
        "encoder.blocks.#.attn.qkv.bias",
        Some((Layer::Block, Decay::No)),
    ),
    (
        "encoder.blocks.#.attn.proj.weight",
        Some((Layer::Block, Decay::Encoder)),
    ),
    (
        "encoder.blocks.#.attn.proj.bias",
        Some((Layer::Block, Decay::No)),
    ),
    ("encoder.blocks.#.ls1", Some((Layer::Block, Decay::No))),
    (
        "encoder.blocks.#.norm2.gamma",
        Some((Layer::Block, Decay::No)),
    ),
    (
        "encoder.blocks.#.norm2.beta",
        Some((Layer::Block, Decay::No)),
    ),
    (
        "encoder.blocks.#.mlp.fc1.weight",
        Some((Layer::Block, Decay::Encoder)),
    ),
    (
        "encoder.blocks.#.mlp.fc1.bias",
        Some((Layer::Block, Decay::No)),
    ),
    (
        "encoder.blocks.#.mlp.fc2.weight",
        Some((Layer::Block, Decay::Encoder)),
    ),
    (
        "encoder.blocks.#.mlp.fc2.bias",
        Some((Layer::Block, Decay::No)),
    ),
    ("encoder.blocks.#.ls2", Some((Layer::Block, Decay::No))),
    ("encoder.norm.gamma", Some((Layer::Final, Decay::No))),
    ("encoder.norm.beta", Some((Layer::Final, Decay::No))),
    (
        "heads.#.projector.#.linear.weight",
        Some((Layer::Head, Decay::Head)),
    ),
    (
        "heads.#.projector.#.bn.gamma",
        Some((Layer::Head, Decay::No)),
    ),
    (
        "heads.#.projector.#.bn.beta",
        Some((Layer::Head, Decay::No)),
    ),
    ("heads.#.projector.#.bn.running_mean", None),
    ("heads.#.projector.#.bn.running_var", None),
    (
        "heads.#.predictor.#.linear.weight",
        Some((Layer::Head, Decay::Head)),
    ),
    (
        "heads.#.predictor.#.bn.gamma",
        Some((Layer::Head, Decay::No)),
    ),
    (
        "heads.#.predictor.#.bn.beta",
        Some((Layer::Head, Decay::No)),
    ),
    ("heads.#.predictor.#.bn.running_mean", None),
    ("heads.#.predictor.#.bn.running_var", None),
];

/// The numbers standing for `#` if `path` matches `pattern`.
fn matches(pattern: &str, path: &str) -> Option<Vec<usize>> {
    let (p, q): (Vec<&str>, Vec<&str>) = (pattern.split('.').collect(), path.split('.').collect());
    if p.len() != q.len() {
        return None;
    }
    let mut nums = Vec::new();
    for (a, b) in p.iter().zip(&q) {
        match *a {
            "#" => nums.push(b.parse().ok()?),
            _ if a == b => {}
            _ => return None,
        }
    }
    Some(nums)
}

/// The settings of one check: stage, γ, frozen blocks, encoder and head weight decay.
struct Case {
    stage: u8,
    gamma: f64,
    freeze: usize,
    enc_wd: f64,
    head_wd: f64,
}

/// The intended (LR scale, weight decay) of a trained parameter.
fn intended(layer: Layer, decay: Decay, j: Option<usize>, depth: usize, c: &Case) -> (f64, f64) {
    let stage3 = c.stage == 3;
    let lr = match layer {
        Layer::Head => 1.0,
        _ if !stage3 => 0.0,
        Layer::Stem if c.freeze > 0 => 0.0,
        Layer::Stem => c.gamma.powi(depth as i32 + 1),
        Layer::Block => match j {
            Some(j) if j < c.freeze => 0.0,
            Some(j) => c.gamma.powi((depth - j) as i32),
            None => panic!("block pattern without an index"),
        },
        Layer::Final => 1.0,
    };
    let wd = match decay {
        Decay::No => 0.0,
        Decay::Encoder => c.enc_wd,
        Decay::Head => c.head_wd,
    };
    (lr, wd)
}

/// A trainer on encoder `vit` (weights `tensors`) with heads on the last blocks and `main`.
fn group_trainer(vit: &VitConfig, tensors: &TensorMap, c: &Case) -> Trainer {
    let sc = if c.stage == 3 { "stage3" } else { "stage2" };
    let cfg = config(&[
        "heads.size=\"debug\"".into(),
        "heads.main=true".into(),
        format!("heads.blocks=[{}]", vit.depth - 1),
        format!("{sc}.layer_decay={}", c.gamma),
        format!("{sc}.freeze_blocks={}", c.freeze),
        format!("{sc}.encoder_weight_decay={}", c.enc_wd),
        format!("{sc}.head_weight_decay={}", c.head_wd),
    ]);
    Trainer::new(cfg, vit.clone(), tensors, Device::flex()).unwrap()
}

/// Checks every parameter of one model against [`TABLE`]; returns the patterns it used.
fn check_groups(vit: &VitConfig, tensors: &TensorMap, c: &Case, used: &mut BTreeSet<&str>) {
    let t = group_trainer(vit, tensors, c);
    let groups = t.groups(c.stage);
    for p in params(t.model.as_ref().unwrap()) {
        let hits: Vec<_> = TABLE
            .iter()
            .filter_map(|(pat, g)| matches(pat, &p.path).map(|n| (*pat, *g, n)))
            .collect();
        assert_eq!(hits.len(), 1, "{}: not exactly one table entry", p.path);
        let (pat, group, nums) = &hits[0];
        used.insert(pat);
        assert_eq!(p.trained, group.is_some(), "{}: trained?", p.path);
        let Some((layer, decay)) = *group else {
            continue;
        };
        let j = (layer == Layer::Block).then(|| nums[0]);
        let (lr, wd) = intended(layer, decay, j, vit.depth, c);
        let got = groups.of(&p.path, p.ndim);
        let what = format!("{} (stage {}, freeze {})", p.path, c.stage, c.freeze);
        assert!(
            (got.lr_scale - lr).abs() <= 1e-12 * lr,
            "{what}: LR scale {} ≠ {lr}",
            got.lr_scale
        );
        assert_eq!(got.weight_decay, wd, "{what}: weight decay");
    }
}

/// Real encoders: the four checkpoint fixtures (MAE pre-norm, data2vec 2.0 post-norm with
/// `embed_norm`, timm with LayerScale, MIM-Refiner) and the depth-12 `tiny` preset.
fn encoders() -> Vec<(VitConfig, TensorMap)> {
    let mut out: Vec<_> = common::FIXTURES
        .iter()
        .map(|(f, heads)| {
            let ck = mimr::checkpoint::load(&common::fixture(f), *heads).unwrap();
            (ck.config, ck.tensors)
        })
        .collect();
    let tiny = VitConfig::preset("tiny", 32).unwrap();
    let tensors = tiny.random_tensors(0);
    out.push((tiny, tensors));
    out
}

#[test]
fn every_parameter_path_lands_in_its_intended_group() {
    let cases = [
        Case {
            stage: 2,
            gamma: 0.65,
            freeze: 0,
            enc_wd: 0.05,
            head_wd: 1e-5,
        },
        Case {
            stage: 3,
            gamma: 0.65,
            freeze: 0,
            enc_wd: 0.05,
            head_wd: 2e-5,
        },
        Case {
            stage: 3,
            gamma: 0.8,
            freeze: 1,
            enc_wd: 0.1,
            head_wd: 3e-5,
        },
    ];
    let mut used = BTreeSet::new();
    let encs = encoders();
    assert!(encs.iter().any(|(v, _)| v.layer_scale) && encs.iter().any(|(v, _)| v.embed_norm));
    for (vit, tensors) in &encs {
        for c in &cases {
            check_groups(vit, tensors, c, &mut used);
        }
    }
    let unused: Vec<_> = TABLE
        .iter()
        .map(|e| e.0)
        .filter(|p| !used.contains(p))
        .collect();
    assert!(unused.is_empty(), "table entries no model has: {unused:?}");
    // spot values written out (ViT-Ti, depth 12, γ = 0.65, stage 3)
    let (tiny, tensors) = encs.last().unwrap();
    let g = group_trainer(tiny, tensors, &cases[1]).groups(3);
    assert!((g.of("encoder.blocks.11.mlp.fc1.weight", 2).lr_scale - 0.65).abs() < 1e-15);
    assert!((g.of("encoder.blocks.0.norm1.gamma", 1).lr_scale - 5.688e-3).abs() < 1e-6);
    assert!((g.of("encoder.patch_weight", 4).lr_scale - 3.697e-3).abs() < 1e-6);
}
