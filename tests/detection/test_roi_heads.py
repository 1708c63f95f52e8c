import copy

import pytest
import torch
from torchvision.models.detection.roi_heads import RoIHeads

from longtail.detection import (
    BalancedGroupSoftmax,
    LongTailRoIHeads,
    MetaReweighter,
    create_detector,
    reset_class_logits,
)
from longtail.detection.heads.balms import class_balanced_image_weights
from longtail.detection.lvis import collate_detection as collate
from longtail.detection.train import (
    decoupled_train_one_epoch,
    freeze_all_but_class_logits,
    predict,
    roi_training_features,
    train_one_epoch,
)

NUM_CLASSES = 5
INSTANCE_COUNTS = [300, 40, 5, 2000, 3]
IMAGE_COUNTS = [60, 20, 4, 90, 2]
HEADS = ["softmax", "bags", "balanced_softmax", "balms"]


def _detector(arch="fasterrcnn", head="softmax", **kw):
    torch.manual_seed(0)
    return create_detector(arch, num_classes=NUM_CLASSES, head=head, instance_counts=INSTANCE_COUNTS,
                           image_counts=IMAGE_COUNTS, num_images=100, min_size=64, max_size=64, **kw)


def _batch(samples):
    images, targets = collate(samples)
    return list(images), [dict(t) for t in targets]


def test_softmax_head_reproduces_torchvision_roi_heads(toy_samples):
    """Same weights, same RNG: our subclass with the softmax head gives torchvision's losses and detections."""
    model = _detector("maskrcnn")
    reference = copy.deepcopy(model)
    ours = model.roi_heads
    reference.roi_heads = RoIHeads(ours.box_roi_pool, ours.box_head, ours.box_predictor, 0.5, 0.5,
                                   ours.fg_bg_sampler.batch_size_per_image, 0.25, None,
                                   ours.score_thresh, ours.nms_thresh, ours.detections_per_img,
                                   mask_roi_pool=ours.mask_roi_pool, mask_head=ours.mask_head,
                                   mask_predictor=ours.mask_predictor)
    images, targets = _batch(toy_samples[:3])
    results = []
    for m in (model, reference):
        m.train()
        torch.manual_seed(3)
        losses = m(images, targets)
        m.eval()
        with torch.no_grad():
            results.append((losses, m(images)))
    (l1, d1), (l2, d2) = results
    assert l1.keys() == l2.keys() == {"loss_classifier", "loss_box_reg", "loss_mask", "loss_objectness",
                                      "loss_rpn_box_reg"}
    for k in l1:
        assert torch.allclose(l1[k], l2[k]), k
    for a, b in zip(d1, d2):
        assert a["boxes"].shape[0] > 0
        for k in ("boxes", "scores", "labels", "masks"):
            assert torch.equal(a[k], b[k]), k


@pytest.mark.parametrize("head", HEADS)
def test_mask_rcnn_end_to_end_with_each_head(head, toy_samples):
    model = _detector("maskrcnn", head, box_score_thresh=0.0)
    loader = [collate(toy_samples[i:i + 2]) for i in range(0, 6, 2)]
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.01, momentum=0.9)
    stats = train_one_epoch(model, loader, opt, device=torch.device("cpu"))
    assert stats["steps"] == 3 and torch.isfinite(torch.tensor(stats["loss"]))
    assert {"loss_classifier", "loss_box_reg", "loss_mask"} <= set(stats)
    dets = predict(model, loader[:1], torch.device("cpu"))
    assert [d["image_id"] for d in dets] == [1, 2]
    for d in dets:
        n = d["boxes"].shape[0]
        assert n > 0 and d["scores"].shape == (n,) and d["masks"].shape == (n, 64, 64)
        assert d["labels"].min() >= 1 and d["labels"].max() <= NUM_CLASSES


def test_head_sets_the_class_logit_layer_size():
    for head, k in [("softmax", 6), ("bags", 6 + 5), ("balanced_softmax", 5)]:
        model = _detector(head=head, head_options={"bin_edges": (10, 100, 1000)} if head == "bags" else None)
        assert model.roi_heads.box_predictor.cls_score.out_features == k
        assert model.roi_heads.box_predictor.bbox_pred.out_features == 6 * 4


def test_decoupled_stage_trains_only_the_class_logits(toy_samples):
    model = _detector("maskrcnn")
    layer = reset_class_logits(model, BalancedGroupSoftmax(INSTANCE_COUNTS))
    assert layer.out_features == 11 and model.roi_heads.box_predictor.cls_score is layer
    freeze_all_but_class_logits(model)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    opt = torch.optim.SGD(layer.parameters(), lr=0.1, momentum=0.9)
    loader = [collate(toy_samples[i:i + 2]) for i in range(0, 6, 2)]
    stats = decoupled_train_one_epoch(model, loader, opt, device=torch.device("cpu"))
    assert stats["steps"] == 3
    changed = {k for k, v in model.state_dict().items() if not torch.equal(v, before[k])}
    assert changed == {"roi_heads.box_predictor.cls_score.weight", "roi_heads.box_predictor.cls_score.bias"}


def test_feature_path_loss_equals_the_model_loss(toy_samples):
    """roi_training_features samples the RoIs exactly as the detector's own forward does."""
    model = _detector(head="bags")
    images, targets = _batch(toy_samples[:2])
    torch.manual_seed(5)
    feats, labels = roi_training_features(model, images, targets)
    via_features = model.roi_heads.classification.loss(model.roi_heads.box_predictor.cls_score(feats), labels)
    torch.manual_seed(5)  # same draws for proposal sampling and the BAGS "others"
    model.train()
    losses = model(images, targets)
    assert torch.allclose(via_features, losses["loss_classifier"])
    assert labels.numel() > 0 and (labels > 0).any()


def test_balms_decoupled_epoch_updates_the_reweighter(toy_samples):
    model = _detector("fasterrcnn", "balms")
    layer = freeze_all_but_class_logits(model)
    opt = torch.optim.SGD(layer.parameters(), lr=0.05, momentum=0.9)
    reweighter = MetaReweighter(NUM_CLASSES)
    meta_opt = torch.optim.Adam(reweighter.parameters(), lr=0.01)
    loader = [collate(toy_samples[i:i + 2]) for i in range(0, 6, 2)]
    weights = class_balanced_image_weights([t["labels"].tolist() for _, t in toy_samples], NUM_CLASSES)
    meta = iter([collate([toy_samples[int(i)] for i in torch.multinomial(weights, 2)]) for _ in range(3)])
    stats = decoupled_train_one_epoch(model, loader, opt, device=torch.device("cpu"), reweighter=reweighter,
                                      meta_optimizer=meta_opt, meta_batches=meta)
    assert stats["steps"] == 3 and stats["meta_loss"] > 0
    assert not torch.equal(reweighter.logits.detach(), torch.zeros(NUM_CLASSES))


def test_class_balanced_image_weights():
    # class 1 in 3 of 4 images (r = 4/3), classes 2 and 3 in one image each (r = 4)
    w = class_balanced_image_weights([[1], [1, 1], [1, 2], [3]], 3).double()
    assert torch.allclose(w, torch.tensor([4 / 3, 4 / 3, 4.0, 4.0], dtype=torch.float64))


def test_keypoints_and_wrong_heads_are_rejected():
    with pytest.raises(ValueError, match="arch"):
        create_detector("retinanet", num_classes=3)
    with pytest.raises(KeyError, match="unknown detection head"):
        create_detector(num_classes=3, head="bagz")
    model = _detector()
    with pytest.raises(ValueError, match="classes"):
        reset_class_logits(model, BalancedGroupSoftmax([1, 20, 200, 2000]))
    assert isinstance(model.roi_heads, LongTailRoIHeads)


def test_matmul_roi_align_equals_torchvision_roi_align():
    from torchvision.ops import roi_align

    from longtail.detection.models import MatmulRoIAlign

    g = torch.Generator().manual_seed(0)
    feat = torch.randn(2, 8, 16, 12, dtype=torch.float64, generator=g, requires_grad=True)
    boxes = []
    for _ in range(2):  # includes boxes past the border and boxes under one pixel
        xy = torch.rand(40, 2, generator=g, dtype=torch.float64) * torch.tensor([100.0, 130.0])
        wh = torch.rand(40, 2, generator=g, dtype=torch.float64) * 50 + 0.2
        boxes.append(torch.cat([xy, xy + wh], 1))
    for size in (7, 14):
        ours = MatmulRoIAlign("0", size, 2)({"0": feat}, boxes, [(128, 96)] * 2)
        ref = roi_align(feat, boxes, size, spatial_scale=1 / 8, sampling_ratio=2, aligned=False)
        w = torch.randn(ref.shape, generator=g, dtype=torch.float64)
        (g1,), (g2,) = torch.autograd.grad((ours * w).sum(), feat), torch.autograd.grad((ref * w).sum(), feat)
        assert torch.allclose(ours, ref, atol=1e-12) and torch.allclose(g1, g2, atol=1e-12)
