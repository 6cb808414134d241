//! libtorch is linked and works from the first commit: a small conv net runs forward and
//! backward, and its autograd gradient matches central finite differences (f64).
use tch::{nn, nn::Module, Device, Kind, Tensor};

fn net(vs: &nn::Path) -> impl Module {
    // Smooth activations so finite differences are accurate.
    nn::seq()
        .add(nn::conv2d(vs / "c1", 2, 4, 3, Default::default()))
        .add_fn(|x| x.tanh())
        .add(nn::conv2d(vs / "c2", 4, 4, 3, nn::ConvConfig { stride: 2, ..Default::default() }))
        .add_fn(|x| x.tanh().adaptive_avg_pool2d([1, 1]).flatten(1, -1))
        .add(nn::linear(vs / "fc", 4, 2, Default::default()))
}

#[test]
fn conv_net_gradient_matches_finite_differences() {
    tch::set_num_threads(1);
    tch::manual_seed(3);
    let vs = nn::VarStore::new(Device::Cpu);
    let model = net(&vs.root());
    let mut vs = vs;
    vs.double();
    let x = Tensor::randn([3, 2, 9, 9], (Kind::Double, Device::Cpu));
    let target = Tensor::randn([3, 2], (Kind::Double, Device::Cpu));
    let loss_of = |m: &dyn Module| (m.forward(&x) - &target).square().mean(Kind::Double);

    let loss = loss_of(&model);
    assert_eq!(model.forward(&x).size(), [3, 2]);
    loss.backward();
    let vars = vs.variables();
    let w = &vars["c1.weight"];
    let grad = w.grad();
    assert!(
        grad.abs().sum(Kind::Double).double_value(&[]) > 0.0,
        "gradient reaches the first layer"
    );

    let eps = 1e-6;
    let mut worst: f64 = 0.0;
    for idx in [[0i64, 0, 0, 0], [1, 1, 2, 1], [3, 0, 1, 2], [2, 1, 0, 0]] {
        let orig = w.double_value(&idx);
        let at = |v: f64| {
            tch::no_grad(|| {
                let _ = w.get(idx[0]).get(idx[1]).get(idx[2]).get(idx[3]).fill_(v);
            });
            tch::no_grad(|| loss_of(&model).double_value(&[]))
        };
        let fd = (at(orig + eps) - at(orig - eps)) / (2.0 * eps);
        at(orig);
        let g = grad.double_value(&idx);
        worst = worst.max((fd - g).abs() / g.abs().max(1e-8));
    }
    assert!(worst < 1e-6, "autograd vs finite differences: worst relative error {worst}");

    // One optimiser step lowers the loss.
    let mut opt = nn::OptimizerConfig::build(nn::Sgd::default(), &vs, 0.1).unwrap();
    opt.zero_grad();
    let before = loss_of(&model);
    before.backward();
    opt.step();
    let after = tch::no_grad(|| loss_of(&model).double_value(&[]));
    assert!(after < before.double_value(&[]), "{after} >= {}", before.double_value(&[]));
}

#[test]
fn device_choice_cpu_always_works_and_cuda_is_refused_without_a_gpu() {
    assert_eq!(
        simreg_learn::device::resolve(simreg_learn::device::DeviceChoice::Cpu).unwrap(),
        Device::Cpu
    );
    let cuda = simreg_learn::device::resolve(simreg_learn::device::DeviceChoice::Cuda);
    assert_eq!(cuda.is_ok(), tch::Cuda::is_available());
    if let Err(e) = cuda {
        assert!(e.to_string().starts_with("--device cuda:"), "{e}");
    }
}
