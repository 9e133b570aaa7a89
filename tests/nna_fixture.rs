//! ID heads, queue and NNA loss against an independent PyTorch implementation of method.md
//! §2–§3 (tools/make_nna_fixtures.py): outputs, BN statistics, NN picks, loss variants,
//! gradients of every head weight and of the input, and the queue after the FIFO update.

mod common;
use burn::module::Module;
use burn::tensor::{Device, Tensor, TensorData};
use mimr::host::{HostTensor, TensorMap, host};
use mimr::refine::heads::Head;
use mimr::refine::loss::{LossVariant, head_loss};
use mimr::refine::queue::{NnQueue, l2n};
use mimr::rng::Rng;

fn fx() -> TensorMap {
    mimr::checkpoint::st::read(&common::fixture("nna_heads.safetensors"))
        .expect("fixture")
        .tensors
}

fn up<const N: usize>(t: &HostTensor, d: &Device) -> Tensor<N> {
    Tensor::from_data(TensorData::new(t.data.clone(), t.shape.clone()), d)
}

fn close(a: &HostTensor, b: &HostTensor, tol: f32, what: &str) {
    assert_eq!(a.shape, b.shape, "{what}: shape");
    let d = a.max_abs_diff(b);
    assert!(d <= tol, "{what}: max abs diff {d} > {tol}");
}

fn scalar(m: &TensorMap, k: &str) -> f64 {
    m[k].data[0] as f64
}

fn ints(t: &HostTensor) -> Vec<i64> {
    t.data.iter().map(|v| *v as i64).collect()
}

struct HeadRun {
    head: Head,
    x: Tensor<2>,
    loss: Tensor<1>,
}

fn run_head(m: &TensorMap, h: &str, tau: f64, dev: &Device) -> HeadRun {
    let head = Head::from_tensors(m, &format!("{h}."), dev)
        .unwrap()
        .train();
    let x = up::<2>(&m[&format!("{h}.x")], dev).require_grad();
    let (z, p) = head.forward(x.clone());
    close(
        &host(z.clone()).unwrap(),
        &m[&format!("{h}.z")],
        1e-5,
        &format!("{h}.z"),
    );
    close(
        &host(p.clone()).unwrap(),
        &m[&format!("{h}.p")],
        1e-5,
        &format!("{h}.p"),
    );
    let base = Device::flex();
    let q = |k: &str| m[&format!("{h}.queue.{k}")].clone();
    let mut queue = NnQueue::from_parts(
        up(&q("x"), &base),
        ints(&q("idx")),
        ints(&q("label")),
        q("age").data.iter().map(|v| *v as u64).collect(),
        q("ptr").data[0] as usize,
    );
    let idx: Vec<usize> = m["batch.idx"].data.iter().map(|v| *v as usize).collect();
    let labels: Vec<i64> = ints(&m["batch.label"]);
    let b = idx.len();
    let (mut nns, mut picks, mut sim, mut agree) = (Vec::new(), Vec::new(), 0.0, 0usize);
    for v in 0..2 {
        let zv = z.clone().narrow(0, v * b, b);
        let look = queue.lookup(zv.clone(), &idx, 1, &mut Rng::new(0)).unwrap();
        let cos = (l2n(zv.without_autodiff().detach()) * look.nn.clone())
            .sum_dim(1)
            .mean();
        sim += host(cos).unwrap().data[0] as f64 / 2.0;
        agree += look
            .picks
            .iter()
            .enumerate()
            .filter(|(i, p)| labels[*i] == queue.label[**p])
            .count();
        picks.extend(look.picks.iter().map(|p| *p as i64));
        nns.push(look.nn);
    }
    assert_eq!(
        picks,
        ints(&m[&format!("{h}.nn_index")]),
        "{h}: NN picks (same-index masking)"
    );
    assert!(
        (sim - scalar(m, &format!("{h}.nn_similarity"))).abs() < 1e-5,
        "{h}: nn_similarity {sim}"
    );
    assert!((agree as f64 / (2 * b) as f64 - scalar(m, &format!("{h}.nn_accuracy"))).abs() < 1e-9);
    for (variant, key) in [
        (LossVariant::NnaReferenceQuirk, "loss_quirk"),
        (LossVariant::AllSwap, "loss_allswap"),
    ] {
        let l = head_loss(&z, &p, &nns, 3, tau, variant);
        let got = host(l.loss).unwrap().data[0] as f64;
        assert!(
            (got - scalar(m, &format!("{h}.{key}"))).abs() < 1e-5,
            "{h}.{key}: {got}"
        );
    }
    let l = head_loss(&z, &p, &nns, 3, tau, LossVariant::Nna);
    let got = host(l.loss.clone()).unwrap().data[0] as f64;
    assert!(
        (got - scalar(m, &format!("{h}.loss"))).abs() < 1e-5,
        "{h}.loss: {got}"
    );
    assert!((l.global_alignment - scalar(m, &format!("{h}.global_alignment"))).abs() < 1e-5);
    assert!((l.local_alignment - scalar(m, &format!("{h}.local_alignment"))).abs() < 1e-5);
    queue.enqueue(z.narrow(0, 0, b), &idx, &labels);
    let a = |k: &str| m[&format!("{h}.after.queue.{k}")].clone();
    close(
        &queue.host_x().unwrap(),
        &a("x"),
        1e-5,
        &format!("{h} queue after enqueue"),
    );
    assert_eq!(queue.idx, ints(&a("idx")));
    assert_eq!(queue.label, ints(&a("label")));
    assert_eq!(
        queue.age.iter().map(|v| *v as i64).collect::<Vec<_>>(),
        ints(&a("age"))
    );
    assert_eq!(
        queue.ptr as f32,
        a("ptr").data[0],
        "{h}: FIFO pointer wraps around"
    );
    HeadRun {
        head,
        x,
        loss: l.loss,
    }
}

#[test]
fn heads_queue_and_nna_loss_match_pytorch() {
    let m = fx();
    let dev = Device::flex().autodiff();
    let runs = [run_head(&m, "h0", 0.2, &dev), run_head(&m, "h1", 0.3, &dev)];
    let total = runs[0].loss.clone() + runs[1].loss.clone();
    assert!((host(total.clone()).unwrap().data[0] as f64 - scalar(&m, "loss")).abs() < 1e-5);
    let grads = total.backward();
    for (h, r) in ["h0", "h1"].iter().zip(&runs) {
        let mut got = TensorMap::new();
        for (group, layers) in [
            ("projector", &r.head.projector),
            ("predictor", &r.head.predictor),
        ] {
            for (i, l) in layers.iter().enumerate() {
                let p = format!("grad.{h}.{group}.{i}");
                let g = |t: Tensor<1>| host(t.grad(&grads).expect("grad")).unwrap();
                got.insert(
                    format!("{p}.0.weight"),
                    host(l.linear.weight.val().grad(&grads).expect("grad"))
                        .unwrap()
                        .transposed_2d(),
                );
                got.insert(format!("{p}.1.weight"), g(l.bn.gamma.val()));
                got.insert(format!("{p}.1.bias"), g(l.bn.beta.val()));
            }
        }
        got.insert(
            format!("grad.{h}.x"),
            host(r.x.grad(&grads).expect("input grad")).unwrap(),
        );
        for (k, v) in &got {
            close(v, &m[k], 1e-5, k);
        }
        let mut after = TensorMap::new();
        r.head.to_tensors("", &mut after).unwrap();
        for (k, v) in after.iter().filter(|(k, _)| k.contains("running")) {
            close(
                v,
                &m[&format!("{h}.after.{k}")],
                1e-5,
                &format!("{h} BN {k}"),
            );
        }
    }
}

#[test]
fn loss_is_log2_for_two_identical_samples_at_unit_temperature() {
    // all embeddings equal: logits all 1/τ, so CE = log(B) with B = 2
    let d = Device::flex();
    let one = |rows: usize| {
        Tensor::<2>::from_data(TensorData::new(vec![1.0f32; rows * 4], [rows, 4]), &d)
    };
    let nn = l2n(one(2));
    let l = head_loss(
        &one(4),
        &one(4),
        &[nn.clone(), nn],
        0,
        1.0,
        LossVariant::Nna,
    );
    let v = host(l.loss).unwrap().data[0] as f64;
    assert!((v - 2f64.ln()).abs() < 1e-6, "{v}");
    assert!((l.global_alignment - 0.5).abs() < 1e-6);
}
