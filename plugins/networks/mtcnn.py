"""MTCNN's three networks and the batched cascade that runs them (see plugins/mtcnn.py for the method)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import nms

from lrbench import Face, load_weights

from ..mtcnn import NETWORKS

# Pixels of same-size images stacked into one cascade run. On CPU, stacks of ~8 LFW images (250 × 250) ran
# fastest (1 thread: 64 images/s, against 54 one at a time and 38 for stacks of 32, whose activations outgrow
# the caches); a GPU wants large stacks (16 Mpx take about 1 GB).
CPU_STACK_PIXELS = 1 << 19
DEVICE_STACK_PIXELS = 1 << 24
CROPS_PER_CHUNK = 2048  # R-/O-Net inputs built and run at once


def _conv(c_in: int, c_out: int, kernel: int) -> tuple[nn.Conv2d, nn.PReLU]:
    return nn.Conv2d(c_in, c_out, kernel), nn.PReLU(c_out)


def _flatten(x: torch.Tensor) -> torch.Tensor:
    """Channels-last, width before height: the order the weights' dense layers were converted in."""
    return x.permute(0, 3, 2, 1).flatten(1)


class PNet(nn.Module):
    """Fully convolutional 12×12 window classifier: (face probability map, box regression map)."""

    def __init__(self):
        super().__init__()
        self.conv1, self.prelu1 = _conv(3, 10, 3)
        self.conv2, self.prelu2 = _conv(10, 16, 3)
        self.conv3, self.prelu3 = _conv(16, 32, 3)
        self.conv4_1 = nn.Conv2d(32, 2, 1)
        self.conv4_2 = nn.Conv2d(32, 4, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = F.max_pool2d(self.prelu1(self.conv1(x)), 2, 2, ceil_mode=True)
        x = self.prelu3(self.conv3(self.prelu2(self.conv2(x))))
        return self.conv4_1(x).softmax(1)[:, 1], self.conv4_2(x)


class RNet(nn.Module):
    """24×24 crop → (face probability, box regression)."""

    def __init__(self):
        super().__init__()
        self.conv1, self.prelu1 = _conv(3, 28, 3)
        self.conv2, self.prelu2 = _conv(28, 48, 3)
        self.conv3, self.prelu3 = _conv(48, 64, 2)
        self.dense4, self.prelu4 = nn.Linear(576, 128), nn.PReLU(128)
        self.dense5_1 = nn.Linear(128, 2)
        self.dense5_2 = nn.Linear(128, 4)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = F.max_pool2d(self.prelu1(self.conv1(x)), 3, 2, ceil_mode=True)
        x = F.max_pool2d(self.prelu2(self.conv2(x)), 3, 2, ceil_mode=True)
        x = self.prelu4(self.dense4(_flatten(self.prelu3(self.conv3(x)))))
        return self.dense5_1(x).softmax(1)[:, 1], self.dense5_2(x)


class ONet(nn.Module):
    """48×48 crop → (face probability, box regression, five landmarks as x1…x5, y1…y5 in 0…1 of the box)."""

    def __init__(self):
        super().__init__()
        self.conv1, self.prelu1 = _conv(3, 32, 3)
        self.conv2, self.prelu2 = _conv(32, 64, 3)
        self.conv3, self.prelu3 = _conv(64, 64, 3)
        self.conv4, self.prelu4 = _conv(64, 128, 2)
        self.dense5, self.prelu5 = nn.Linear(1152, 256), nn.PReLU(256)
        self.dense6_1 = nn.Linear(256, 2)
        self.dense6_2 = nn.Linear(256, 4)
        self.dense6_3 = nn.Linear(256, 10)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = F.max_pool2d(self.prelu1(self.conv1(x)), 3, 2, ceil_mode=True)
        x = F.max_pool2d(self.prelu2(self.conv2(x)), 3, 2, ceil_mode=True)
        x = F.max_pool2d(self.prelu3(self.conv3(x)), 2, 2, ceil_mode=True)
        x = self.prelu5(self.dense5(_flatten(self.prelu4(self.conv4(x)))))
        return self.dense6_1(x).softmax(1)[:, 1], self.dense6_2(x), self.dense6_3(x)


def _normalise(pixels: torch.Tensor) -> torch.Tensor:
    return (pixels - 127.5) * 0.0078125


def pyramid_scales(height: int, width: int, min_face_size: int, factor: float) -> list[float]:
    """Scales mapping the smallest face searched for to P-Net's 12 px window, down to a 12 px short side."""
    scale = 12.0 / min_face_size
    short_side = min(height, width) * scale
    scales = []
    while short_side >= 12:
        scales.append(scale)
        scale *= factor
        short_side *= factor
    return scales


def nms_per_image(boxes: torch.Tensor, scores: torch.Tensor, image: torch.Tensor, iou: float) -> torch.Tensor:
    """Indices kept by NMS run separately in each image, best score first (``batched_nms`` without shifting)."""
    keep = torch.zeros_like(scores, dtype=torch.bool)
    for i in torch.unique(image):
        members = torch.nonzero(image == i).flatten()
        keep[members[nms(boxes[members], scores[members], iou)]] = True
    kept = torch.nonzero(keep).flatten()
    return kept[scores[kept].argsort(descending=True, stable=True)]


def regress(boxes: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """R-/O-Net box regression: offsets in units of the box's inclusive width and height."""
    w = boxes[:, 2] - boxes[:, 0] + 1
    h = boxes[:, 3] - boxes[:, 1] + 1
    return torch.stack([boxes[:, 0] + offsets[:, 0] * w, boxes[:, 1] + offsets[:, 1] * h,
                        boxes[:, 2] + offsets[:, 2] * w, boxes[:, 3] + offsets[:, 3] * h], 1)  # fmt: skip


def square(boxes: torch.Tensor) -> torch.Tensor:
    """The square with the box's centre and its longer side."""
    w = boxes[:, 2] - boxes[:, 0]
    h = boxes[:, 3] - boxes[:, 1]
    side = torch.maximum(w, h)
    x1 = boxes[:, 0] + w * 0.5 - side * 0.5
    y1 = boxes[:, 1] + h * 0.5 - side * 0.5
    return torch.stack([x1, y1, x1 + side, y1 + side], 1)


def _area_indices(start: torch.Tensor, length: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Start and end (exclusive) of each output pixel's input range: adaptive average pooling's rule."""
    i = torch.arange(size, device=start.device)
    first = start[:, None] + (i * length[:, None]) // size
    last = start[:, None] - ((-(i + 1) * length[:, None]) // size)
    return first, last


def integral_image(images: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) → (N, H + 1, W + 1, 3) sums of all pixels above and left, in integers: box sums are exact."""
    height, width = images.shape[2:]
    dtype = torch.int32 if height * width * 255 < 2**31 else torch.int64
    sums = images.permute(0, 2, 3, 1).to(dtype).cumsum(1).cumsum(2)
    return F.pad(sums, (0, 0, 1, 0, 1, 0))


def crop_resize(integral: torch.Tensor, image: torch.Tensor, boxes: torch.Tensor, size: int) -> torch.Tensor:
    """Pixel rows/columns [y1, y2) × [x1, x2) of each box, area-resampled to size × size: (K, 3, size, size).

    Exact sums divided by the rows and then the columns averaged: what ``F.interpolate(mode="area")`` gives.
    """
    rows = torch.cat(_area_indices(boxes[:, 1], boxes[:, 3] - boxes[:, 1], size), 1)  # (K, 2·size): starts, ends
    cols = torch.cat(_area_indices(boxes[:, 0], boxes[:, 2] - boxes[:, 0], size), 1)
    height, width = integral.shape[1:3]
    flat = (image[:, None, None] * height + rows[:, :, None]) * width + cols[:, None, :]
    sums = integral.view(-1, 3).index_select(0, flat.flatten()).view(len(boxes), 2 * size, 2 * size, 3)
    start, end = slice(0, size), slice(size, 2 * size)
    total = sums[:, end, end] - sums[:, start, end] - sums[:, end, start] + sums[:, start, start]
    kh = (rows[:, end] - rows[:, start]).float()[:, :, None, None]
    kw = (cols[:, end] - cols[:, start]).float()[:, None, :, None]
    # Channels-last (NHWC memory) runs R- and O-Net 2.2× faster on CPU than facenet-pytorch's NCHW crops; the
    # convolutions then round differently, which moves boxes and points by < 1e-4 px.
    return (total.float() / kh / kw).permute(0, 3, 1, 2)


def pixel_boxes(boxes: torch.Tensor, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Boxes truncated to whole pixels and clipped to the image (x1, y1, x2, y2 exclusive); valid = not empty.

    A box that extends past the image keeps only its inside part, which the resampling then stretches to a
    square, as facenet-pytorch does (it does not pad).
    """
    whole = boxes.trunc().int()
    x1 = whole[:, 0].clamp(min=1) - 1
    y1 = whole[:, 1].clamp(min=1) - 1
    x2 = whole[:, 2].clamp(max=width)
    y2 = whole[:, 3].clamp(max=height)
    valid = (x2 > x1) & (y2 > y1)
    inside = torch.tensor([0, 0, 1, 1], device=boxes.device)  # any pixel, for the gather; its score is dropped
    return torch.where(valid[:, None], torch.stack([x1, y1, x2, y2], 1), inside).long(), valid


class MTCNN:
    """``detect(images)``: for each (H, W, 3) uint8 RGB image the faces found, largest box first."""

    def __init__(
        self,
        networks: tuple[PNet, RNet, ONet],
        device: torch.device,
        min_face_size: int,
        thresholds: tuple[float, float, float],
        factor: float,
    ):
        self.pnet, self.rnet, self.onet = (net.to(device).eval() for net in networks)
        self.device = device
        self.stack_pixels = CPU_STACK_PIXELS if device.type == "cpu" else DEVICE_STACK_PIXELS
        self.min_face_size, self.thresholds, self.factor = min_face_size, thresholds, factor
        self.weights_files: list[Path] = []

    def __call__(self, images: list[np.ndarray]) -> list[list[Face]]:
        by_size: dict[tuple[int, int], list[int]] = {}
        for i, image in enumerate(images):
            if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
                raise ValueError(f"image {i}: expected an (H, W, 3) uint8 RGB array, not {image.shape} {image.dtype}")
            by_size.setdefault(image.shape[:2], []).append(i)
        found: list[list[Face]] = [[] for _ in images]
        for (height, width), members in by_size.items():
            step = max(1, self.stack_pixels // max(1, height * width))
            for start in range(0, len(members), step):
                chunk = members[start : start + step]
                stacked = torch.from_numpy(np.stack([images[i] for i in chunk])).to(self.device)
                for i, faces in zip(chunk, self.detect_stacked(stacked)):
                    found[i] = faces
        return found

    @torch.inference_mode()
    def detect_stacked(self, images: torch.Tensor) -> list[list[Face]]:
        """The cascade on (N, H, W, 3) uint8 images of one size."""
        images = images.permute(0, 3, 1, 2).float()
        boxes, image = self.propose(images)
        scores, points = torch.zeros(0, device=self.device), torch.zeros(0, 5, 2, device=self.device)
        if len(boxes):
            integral = integral_image(images)
            boxes, image = self.refine(integral, boxes, image)
            if len(boxes):
                boxes, scores, points, image = self.output(integral, boxes, image)
        return self.faces(len(images), boxes.cpu().numpy(), scores.cpu().numpy(), points.cpu().numpy(), image.cpu())

    def propose(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Stage 1: squared candidate boxes (K, 4) from P-Net over the pyramid, with their image index (K,)."""
        height, width = images.shape[2:]
        found, found_image = [], []
        for scale in pyramid_scales(height, width, self.min_face_size, self.factor):
            resized = F.interpolate(images, size=(int(height * scale + 1), int(width * scale + 1)), mode="area")
            probability, offsets = self.pnet(_normalise(resized))
            hit = torch.nonzero(probability >= self.thresholds[0])
            cell = hit[:, 1:].flip(1).to(images.dtype)  # (x, y) of the 12 px window in steps of 2
            boxes = torch.cat(
                [
                    ((2 * cell + 1) / scale).floor(),
                    ((2 * cell + 12) / scale).floor(),
                    probability[hit[:, 0], hit[:, 1], hit[:, 2]][:, None],
                    offsets.permute(0, 2, 3, 1)[hit[:, 0], hit[:, 1], hit[:, 2]],
                ],
                1,
            )
            keep = nms_per_image(boxes[:, :4], boxes[:, 4], hit[:, 0], 0.5)
            found.append(boxes[keep])
            found_image.append(hit[keep, 0])
        boxes = torch.cat(found) if found else torch.zeros(0, 9, device=images.device)
        image = torch.cat(found_image) if found else torch.zeros(0, dtype=torch.long, device=images.device)
        keep = nms_per_image(boxes[:, :4], boxes[:, 4], image, 0.7)
        boxes, image = boxes[keep], image[keep]
        w = boxes[:, 2] - boxes[:, 0]  # P-Net's regression uses the exclusive size, unlike R- and O-Net's
        h = boxes[:, 3] - boxes[:, 1]
        moved = torch.stack([boxes[:, 0] + boxes[:, 5] * w, boxes[:, 1] + boxes[:, 6] * h,
                             boxes[:, 2] + boxes[:, 7] * w, boxes[:, 3] + boxes[:, 8] * h], 1)  # fmt: skip
        return square(moved), image

    def crops(
        self, integral: torch.Tensor, boxes: torch.Tensor, image: torch.Tensor, size: int, network: nn.Module
    ) -> tuple[torch.Tensor, ...]:
        """``network`` on the boxes' pixels resampled to size × size; empty crops get probability 0."""
        pixels, valid = pixel_boxes(boxes, integral.shape[1] - 1, integral.shape[2] - 1)
        outputs = []
        for start in range(0, len(boxes), CROPS_PER_CHUNK):
            part = slice(start, start + CROPS_PER_CHUNK)
            outputs.append(network(_normalise(crop_resize(integral, image[part], pixels[part], size))))
        probability, *rest = (torch.cat(parts) for parts in zip(*outputs))
        return (probability * valid, *rest)

    def refine(
        self, integral: torch.Tensor, boxes: torch.Tensor, image: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Stage 2: R-Net keeps, NMS, regression and squaring of the candidates."""
        probability, offsets = self.crops(integral, boxes, image, 24, self.rnet)
        passed = probability > self.thresholds[1]
        boxes, probability, offsets, image = boxes[passed], probability[passed], offsets[passed], image[passed]
        keep = nms_per_image(boxes, probability, image, 0.7)
        return square(regress(boxes[keep], offsets[keep])), image[keep]

    def output(self, integral: torch.Tensor, boxes: torch.Tensor, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Stage 3: O-Net keeps, landmarks in image pixels, regressed boxes (NMS follows on the CPU)."""
        probability, offsets, marks = self.crops(integral, boxes, image, 48, self.onet)
        passed = probability > self.thresholds[2]
        boxes, probability, offsets, marks, image = (t[passed] for t in (boxes, probability, offsets, marks, image))
        w = boxes[:, 2] - boxes[:, 0] + 1
        h = boxes[:, 3] - boxes[:, 1] + 1
        x = w[:, None] * marks[:, :5] + boxes[:, 0, None] - 1
        y = h[:, None] * marks[:, 5:] + boxes[:, 1, None] - 1
        return regress(boxes, offsets), probability, torch.stack([x, y], 2), image

    def faces(
        self, count: int, boxes: np.ndarray, scores: np.ndarray, points: np.ndarray, image: torch.Tensor
    ) -> list[list[Face]]:
        """Per image: NMS by overlap with the smaller box, then the faces largest first (facenet-pytorch's order)."""
        owner = image.numpy()
        result = []
        for i in range(count):
            members = np.flatnonzero(owner == i)
            members = members[nms_min(boxes[members], scores[members], 0.7)]
            b = boxes[members]
            members = members[np.argsort((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]))[::-1]]
            result.append(
                [Face(tuple(float(v) for v in boxes[k]), float(scores[k]), points[k].astype(float)) for k in members]
            )
        return result


def nms_min(boxes: np.ndarray, scores: np.ndarray, threshold: float) -> np.ndarray:
    """Greedy NMS where overlap is the intersection over the smaller box (inclusive pixel sizes)."""
    x1, y1, x2, y2 = boxes.T
    area = (x2 - x1 + 1) * (y2 - y1 + 1)
    order = np.argsort(scores)
    kept = []
    while order.size:
        best, rest = order[-1], order[:-1]
        kept.append(best)
        w = np.maximum(0.0, np.minimum(x2[best], x2[rest]) - np.maximum(x1[best], x1[rest]) + 1)
        h = np.maximum(0.0, np.minimum(y2[best], y2[rest]) - np.maximum(y1[best], y1[rest]) + 1)
        order = rest[w * h / np.minimum(area[best], area[rest]) <= threshold]
    return np.array(kept, dtype=int)


def load_networks(folder: Path) -> tuple[tuple[PNet, RNet, ONet], list[Path]]:
    """The three networks from ``folder``/{pnet,rnet,onet}.pt, each a state dict that must fit exactly."""
    if not folder.is_dir():
        raise ValueError(f"expected a folder holding MTCNN's {', '.join(f'{n}.pt' for n in NETWORKS)}")
    networks = (PNet(), RNet(), ONet())
    for name, network in zip(NETWORKS, networks):
        load_weights(network, folder / f"{name}.pt")  # a file that does not fit is a DataError naming it
    return networks, [network.weights_file for network in networks]


def mtcnn(folder: Path, device, min_face_size: int, thresholds: tuple[float, float, float], factor: float) -> MTCNN:
    """The detector on ``device`` (a torch.device or its name) with the networks in ``folder``."""
    networks, files = load_networks(folder)
    detector = MTCNN(networks, torch.device(device), min_face_size, thresholds, factor)
    detector.weights_files = files
    return detector
