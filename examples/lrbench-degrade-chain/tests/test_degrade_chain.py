import lrbench_degrade_chain as chain
import torch


def test_blur_preserves_flat_images_and_smooths_edges():
    flat = torch.full((1, 3, 20, 20), 100.0)
    torch.testing.assert_close(chain.gaussian_blur(flat, 2.0), flat)
    edge = torch.zeros(1, 1, 20, 20)
    edge[..., 10:] = 255
    blurred = chain.gaussian_blur(edge, 1.5)
    assert 0 < blurred[0, 0, 5, 9] < 255 and blurred[0, 0, 5, 0] < 1


def test_camera_keeps_shape_range_and_each_image_s_noise_follows_its_seed():
    batch = torch.rand(3, 3, 112, 96) * 255
    seeds = torch.tensor([5, 6, 7])
    out = chain.camera(batch, 4, sigma=1.0, noise=3.0, jpeg=50, seeds=seeds)
    assert out.shape == batch.shape and out.min() >= 0 and out.max() <= 255
    torch.testing.assert_close(out, chain.camera(batch, 4, sigma=1.0, noise=3.0, jpeg=50, seeds=seeds))
    alone = chain.camera(batch[1:2], 4, sigma=1.0, noise=3.0, jpeg=50, seeds=seeds[1:2])
    torch.testing.assert_close(alone, out[1:2]), "an image's noise does not depend on its batch"
    assert not torch.equal(out, chain.camera(batch, 4, sigma=1.0, noise=3.0, jpeg=50, seeds=seeds + 1))


def test_each_step_can_be_switched_off():
    batch = torch.rand(1, 3, 112, 96) * 255
    clean = chain.camera(batch, 1, sigma=0, noise=0, jpeg=0)
    torch.testing.assert_close(clean, batch, atol=1e-3, rtol=0)


def test_lower_jpeg_quality_loses_more():
    batch = torch.rand(1, 3, 112, 96) * 255
    error = {q: (chain.jpeg_reencode(batch, q) - batch).abs().mean() for q in (95, 20)}
    assert error[20] > error[95]


def test_registers_camera_with_its_options():
    registered = []
    chain.register_degradations(registered.append)
    (spec,) = registered
    assert spec.name == "camera" and set(spec.options) == {"sigma", "noise", "jpeg"} and spec.takes_seeds
