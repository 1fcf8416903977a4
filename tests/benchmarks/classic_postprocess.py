"""The classic DBNet post-processor, written here as the reference our fast version must match.

It follows the DBNet authors' `SegDetectorRepresenter` (MhLiao/DB) as the seed's code base uses
it: binarize at `thresh`, `cv2.findContours` (RETR_LIST, CHAIN_APPROX_SIMPLE), then per contour
in Python —

* polygon mode: `approxPolyDP` with epsilon 0.002 * arcLength, skip < 4 vertices, score =
  `box_score_fast` of the approximated polygon, skip score < box_thresh, unclip (shapely area and
  length, pyclipper round offset by area * unclip_ratio / length), skip when the offset splits,
  skip when the unclipped polygon's minAreaRect shorter side < min_size + 2;
* box mode: `get_mini_boxes` (minAreaRect, corners ordered from the top-left), skip shorter side
  < min_size, score = `box_score_fast` of the box, skip score < box_thresh, unclip the box, take
  its minAreaRect again, skip shorter side < min_size + 2;

and scale to the destination size by x / width * dest_width, rounded and clipped. Kept close to
the original, quirks included (boxPoints floats truncated to int32 in the score, the rounded-down
bounding box of the score crop). Returns only the kept detections (the original's box mode leaves
zero rows for the dropped ones).
"""

from __future__ import annotations

import cv2
import numpy as np
import pyclipper
from shapely.geometry import Polygon

MIN_SIZE = 3


def classic_postprocess(
    pred,
    *,
    thresh=0.29,
    box_thresh=0.25,
    max_candidates=600,
    unclip_ratio=2.0,
    use_polygon=True,
    dest_width=None,
    dest_height=None,
):
    """pred: (H, W) float32 probability map. Returns (boxes, scores): lists of (N, 2) integer
    arrays in destination pixels (the map's own size by default) and float scores."""
    height, width = pred.shape
    dest_width = width if dest_width is None else dest_width
    dest_height = height if dest_height is None else dest_height
    bitmap = pred > thresh
    fn = _polygons_from_bitmap if use_polygon else _boxes_from_bitmap
    return fn(pred, bitmap, dest_width, dest_height, box_thresh, max_candidates, unclip_ratio)


def _polygons_from_bitmap(pred, bitmap, dest_width, dest_height, box_thresh, max_candidates, unclip_ratio):
    height, width = bitmap.shape
    boxes, scores = [], []
    contours, _ = cv2.findContours((bitmap * 255).astype(np.uint8), cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
    for contour in contours[:max_candidates]:
        epsilon = 0.002 * cv2.arcLength(contour, True)
        approx = cv2.approxPolyDP(contour, epsilon, True)
        points = approx.reshape((-1, 2))
        if points.shape[0] < 4:
            continue
        score = _box_score_fast(pred, points.reshape(-1, 2))
        if box_thresh > score:
            continue
        if points.shape[0] > 2:
            box = _unclip(points, unclip_ratio)
            if len(box) > 1:
                continue
        else:
            continue
        box = box.reshape(-1, 2)
        _, sside = _get_mini_boxes(box.reshape((-1, 1, 2)))
        if sside < MIN_SIZE + 2:
            continue
        box = box.astype(np.float64)
        box[:, 0] = np.clip(np.round(box[:, 0] / width * dest_width), 0, dest_width)
        box[:, 1] = np.clip(np.round(box[:, 1] / height * dest_height), 0, dest_height)
        boxes.append(box.astype(np.int64))
        scores.append(score)
    return boxes, scores


def _boxes_from_bitmap(pred, bitmap, dest_width, dest_height, box_thresh, max_candidates, unclip_ratio):
    height, width = bitmap.shape
    boxes, scores = [], []
    contours, _ = cv2.findContours((bitmap * 255).astype(np.uint8), cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
    for index in range(min(len(contours), max_candidates)):
        contour = contours[index]
        points, sside = _get_mini_boxes(contour)
        if sside < MIN_SIZE:
            continue
        points = np.array(points)
        score = _box_score_fast(pred, points.reshape(-1, 2))
        if box_thresh > score:
            continue
        box = _unclip(points, unclip_ratio).reshape(-1, 1, 2)
        box, sside = _get_mini_boxes(box)
        if sside < MIN_SIZE + 2:
            continue
        box = np.array(box)
        box[:, 0] = np.clip(np.round(box[:, 0] / width * dest_width), 0, dest_width)
        box[:, 1] = np.clip(np.round(box[:, 1] / height * dest_height), 0, dest_height)
        boxes.append(box.astype(np.int16).astype(np.int64))
        scores.append(score)
    return boxes, scores


def _unclip(box, unclip_ratio):
    poly = Polygon(box)
    distance = poly.area * unclip_ratio / poly.length
    offset = pyclipper.PyclipperOffset()
    offset.AddPath(box, pyclipper.JT_ROUND, pyclipper.ET_CLOSEDPOLYGON)
    return np.array(offset.Execute(distance))


def _get_mini_boxes(contour):
    bounding_box = cv2.minAreaRect(contour)
    return _order_points(cv2.boxPoints(bounding_box)), min(bounding_box[1])


def _order_points(box_points):
    points = sorted(list(box_points), key=lambda x: x[0])
    if points[1][1] > points[0][1]:
        index_1, index_4 = 0, 1
    else:
        index_1, index_4 = 1, 0
    if points[3][1] > points[2][1]:
        index_2, index_3 = 2, 3
    else:
        index_2, index_3 = 3, 2
    return [points[index_1], points[index_2], points[index_3], points[index_4]]


def _box_score_fast(bitmap, _box):
    h, w = bitmap.shape[:2]
    box = _box.copy()
    xmin = np.clip(np.floor(box[:, 0].min()).astype(np.int32), 0, w - 1)
    xmax = np.clip(np.ceil(box[:, 0].max()).astype(np.int32), 0, w - 1)
    ymin = np.clip(np.floor(box[:, 1].min()).astype(np.int32), 0, h - 1)
    ymax = np.clip(np.ceil(box[:, 1].max()).astype(np.int32), 0, h - 1)
    mask = np.zeros((ymax - ymin + 1, xmax - xmin + 1), dtype=np.uint8)
    box[:, 0] = box[:, 0] - xmin
    box[:, 1] = box[:, 1] - ymin
    cv2.fillPoly(mask, box.reshape(1, -1, 2).astype(np.int32), 1)
    return cv2.mean(bitmap[ymin : ymax + 1, xmin : xmax + 1], mask)[0]
