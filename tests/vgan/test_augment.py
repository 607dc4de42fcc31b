import pytest
import torch

from vgan.augment import augment, color_jitter, get_transform, stack


def coded_stack(n=3, h=40, w=50):
    """Image channels encode the label and mask, so misaligned crops or flips show up."""
    torch.manual_seed(0)
    labels = (torch.rand(n, 1, h, w) > 0.7).float()
    masks = (torch.rand(n, 1, h, w) > 0.2).float()
    images = torch.cat([labels, masks, torch.rand(n, 1, h, w)], dim=1)
    return stack(images, labels, masks)


def test_crop_and_flips_are_shared_by_image_label_and_mask():
    data = coded_stack()
    gen = torch.Generator().manual_seed(1)
    for _ in range(20):
        b = augment(data, torch.tensor([0, 2, 1, 1]), 16, 0.0, True, gen)
        assert b.images.shape == (4, 3, 16, 16) and b.labels.shape == b.masks.shape == (4, 1, 16, 16)
        assert torch.equal(b.images[:, 0:1], b.labels) and torch.equal(b.images[:, 1:2], b.masks)


def test_a_labels_thin_vessels_are_cropped_and_flipped_with_it():
    """The sixth channel (the labels' thin vessels, where the loss weighs them) goes through the one gather:
    a crop's thin pixels are its label's, wherever the crop lies and however it is flipped."""
    torch.manual_seed(0)
    n, h, w = 3, 40, 50
    labels = (torch.rand(n, 1, h, w) > 0.5).float()
    masks = torch.ones(n, 1, h, w)
    thin = labels * (torch.rand(n, 1, h, w) > 0.5).float()
    images = torch.cat([labels, thin, torch.rand(n, 1, h, w)], dim=1)
    data = stack(images, labels, masks, thin)
    assert data.shape == (n, 6, h, w) and stack(images, labels, masks).shape == (n, 5, h, w)
    gen = torch.Generator().manual_seed(1)
    for _ in range(20):
        b = augment(data, torch.tensor([0, 2, 1, 1]), 16, 0.0, True, gen)
        assert b.thin.shape == (4, 1, 16, 16) and torch.equal(b.images[:, 1:2], b.thin)
        assert torch.equal(b.images[:, 0:1], b.labels) and bool((b.thin <= b.labels).all())
    assert augment(stack(images, labels, masks), torch.tensor([0]), 16, 0.0, True, gen).thin is None


def test_each_crop_is_a_window_of_its_source_possibly_flipped():
    data = coded_stack()
    gen = torch.Generator().manual_seed(2)
    b = augment(data, torch.tensor([1]), 8, 0.0, True, gen)
    src = data[1, 2]
    crop = b.images[0, 2]
    found = any(
        torch.equal(view[y : y + 8, x : x + 8], crop)
        for view in (src, src.flip(0), src.flip(1), src.flip(0).flip(1))
        for y in range(src.shape[0] - 7)
        for x in range(src.shape[1] - 7)
    )
    assert found


def test_flips_happen_both_ways():
    ramp = torch.arange(50.0).view(1, 1, 1, 50).expand(1, 5, 40, 50).contiguous()
    gen = torch.Generator().manual_seed(0)
    b = augment(ramp, torch.zeros(32, dtype=torch.long), None, 0.0, True, gen)
    increasing = (b.labels[:, 0, 0, 1] > b.labels[:, 0, 0, 0])
    assert increasing.any() and (~increasing).any()
    b = augment(ramp, torch.zeros(8, dtype=torch.long), None, 0.0, False, gen)
    assert torch.equal(b.labels, ramp[:, 3:4].expand(8, 1, 40, 50))


def test_strength_zero_leaves_colours_alone_and_one_changes_only_the_image():
    data = coded_stack()
    data[:, :3] = torch.rand(3, 3, 40, 50)
    idx = torch.tensor([0, 1, 2])
    plain = augment(data, idx, None, 0.0, False, torch.Generator().manual_seed(3))
    assert torch.equal(plain.images, data[:, :3])
    jittered = augment(data, idx, None, 1.0, False, torch.Generator().manual_seed(3))
    assert not torch.allclose(jittered.images, data[:, :3])
    assert torch.equal(jittered.labels, data[:, 3:4]) and torch.equal(jittered.masks, data[:, 4:5])
    assert jittered.images.min() >= 0 and jittered.images.max() <= 1


def test_strength_scales_the_jitter():
    x = torch.rand(64, 3, 8, 8) * 0.5 + 0.25
    u = torch.rand(64, 3) * 2 - 1
    small = (color_jitter(x, u, 0.2) - x).abs().mean()
    large = (color_jitter(x, u, 1.0) - x).abs().mean()
    assert 0 < small < large


def test_hue_rotation_keeps_gray_gray():
    gray = torch.rand(4, 1, 6, 6).expand(4, 3, 6, 6) * 0.8 + 0.1
    out = color_jitter(gray, torch.tensor([[0.0, 0.0, 1.0]] * 4), 1.0)
    assert torch.allclose(out[:, 0], out[:, 1], atol=1e-5) and torch.allclose(out[:, 1], out[:, 2], atol=1e-5)


def test_hue_shifts_colour():
    red = torch.zeros(1, 3, 4, 4)
    red[:, 0] = 0.8
    out = color_jitter(red, torch.tensor([[0.0, 0.0, 1.0]]), 1.0)
    assert (out[:, 1:] > 0.01).any()


def test_seeded_generator_reproduces_batches():
    data = coded_stack()
    a = augment(data, torch.tensor([0, 1]), 16, 1.0, True, torch.Generator().manual_seed(9))
    b = augment(data, torch.tensor([0, 1]), 16, 1.0, True, torch.Generator().manual_seed(9))
    assert torch.equal(a.images, b.images)


def test_eval_transform_is_identity():
    data = coded_stack()
    b = get_transform(False, 16, 1.0, True)(data, torch.tensor([2]), None)
    assert torch.equal(b.images, data[2:3, :3]) and b.images.shape[-2:] == (40, 50)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_runs_on_the_gpu():
    data = coded_stack().to("cuda")
    b = augment(data, torch.tensor([0, 1]), 16, 1.0, True, torch.Generator().manual_seed(0))
    assert b.images.is_cuda


def test_uint8_photographs_train_exactly_as_their_floats():
    """A split held as uint8 (8-bit files) is stacked as uint8 and gives the batches its floats would."""
    torch.manual_seed(3)
    pixels = torch.randint(0, 256, (3, 3, 40, 50), dtype=torch.uint8)
    labels, masks = torch.rand(3, 1, 40, 50) > 0.7, torch.rand(3, 1, 40, 50) > 0.2
    held = stack(pixels, labels, masks)
    floats = stack(pixels.float() / 255, labels.float(), masks.float())
    assert held.dtype == torch.uint8 and held.nbytes * 4 == floats.nbytes
    for train in (True, False):
        transform = get_transform(train, 16, 1.0, True)
        a = transform(held, torch.tensor([0, 2, 1]), torch.Generator().manual_seed(4))
        b = transform(floats, torch.tensor([0, 2, 1]), torch.Generator().manual_seed(4))
        for field in ("images", "labels", "masks"):
            x, y = getattr(a, field), getattr(b, field)
            assert x.dtype == torch.float32 and torch.equal(x, y), (train, field)


def test_crops_of_padded_images_lie_within_each_image_and_reach_its_corners():
    """Images of two sizes held padded to the larger: channel 0 marks each image's own pixels, channels 1
    and 2 hold row and column (/ 100), so a crop's first pixel tells its offset."""
    sizes = torch.tensor([[20, 30], [40, 50]])
    rows, cols = torch.meshgrid(torch.arange(40) / 100, torch.arange(50) / 100, indexing="ij")
    images = torch.stack([torch.ones(40, 50), rows, cols]).repeat(2, 1, 1, 1)
    images[0, :, 20:], images[0, :, :, 30:] = 0, 0
    flags = torch.zeros(2, 1, 40, 50)
    data = stack(images, flags, flags)
    gen = torch.Generator().manual_seed(5)
    offsets: dict[int, set] = {0: set(), 1: set()}
    for _ in range(300):
        b = augment(data, torch.tensor([0, 1]), 16, 0.0, False, gen, sizes)
        assert bool((b.images[:, 0] == 1).all())  # no padding in any crop
        for i in (0, 1):
            offsets[i].add((round(b.images[i, 1, 0, 0].item() * 100), round(b.images[i, 2, 0, 0].item() * 100)))
    assert {y for y, _ in offsets[0]} == set(range(5)) and {x for _, x in offsets[0]} == set(range(15))
    assert max(y for y, _ in offsets[1]) == 24 and max(x for _, x in offsets[1]) == 34


def colour_stack(n=4, h=24, w=30):
    torch.manual_seed(6)
    flags = (torch.rand(n, 1, h, w) > 0.5).float()
    return stack(torch.rand(n, 3, h, w), flags, flags)


def test_grey_turns_crops_into_their_green_channel_or_their_luminance_in_three_channels():
    data = colour_stack()
    index = torch.randint(0, 4, (64,), generator=torch.Generator().manual_seed(0))
    plain = augment(data, index, None, 0.0, False, torch.Generator().manual_seed(7))
    grey = augment(data, index, None, 0.0, False, torch.Generator().manual_seed(7), grey=1.0)
    assert torch.equal(grey.labels, plain.labels) and torch.equal(grey.masks, plain.masks)
    assert bool((grey.images == grey.images[:, :1]).all())  # one grey, three channels
    luminance = (plain.images * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1)
    green = torch.tensor([torch.equal(g[0], p[1]) for g, p in zip(grey.images, plain.images, strict=True)])
    assert torch.allclose(grey.images[~green, 0], luminance[~green], atol=1e-6)
    assert 16 < int(green.sum()) < 48  # both kinds, about half each


def test_grey_turns_about_its_share_and_jitter_still_reaches_them():
    data = colour_stack()
    index = torch.randint(0, 4, (400,), generator=torch.Generator().manual_seed(1))
    b = augment(data, index, 16, 1.0, True, torch.Generator().manual_seed(8), grey=0.25)
    turned = (b.images == b.images[:, :1]).flatten(1).all(1)
    assert 70 <= int(turned.sum()) <= 130
    assert len({round(x.mean().item(), 3) for x in b.images[turned]}) > 50  # brightness varies among the grey too


def test_no_grey_draws_the_batches_drawn_before_it_existed():
    """grey=0 draws no random number: a run's batches, hence its figures, stay those of the code before it."""
    data = colour_stack()
    gens = [torch.Generator().manual_seed(9) for _ in range(2)]
    a = augment(data, torch.tensor([0, 1, 3]), 16, 1.0, True, gens[0])
    b = get_transform(True, 16, 1.0, True, None, 0.0)(data, torch.tensor([0, 1, 3]), gens[1])
    assert torch.equal(a.images, b.images) and torch.equal(gens[0].get_state(), gens[1].get_state())
    c = augment(data, torch.tensor([0, 1, 3]), 16, 1.0, True, torch.Generator().manual_seed(9), grey=0.5)
    assert torch.equal(c.labels, a.labels)  # crops and flips drawn first, as before

