"""Any timm or torchvision classification model as a longtail Classifier (``timm/<name>``, ``torchvision/<name>``):
the classifier is found wherever the model keeps it, local weights load (nothing downloaded), and a timm
backbone trains through the CLI."""

import pytest
import torch
import torchvision

from helpers.runs import read_metrics, tiny_args
from longtail.cli.main import main
from longtail.models import create_model

timm = pytest.importorskip("timm", reason="timm is an optional dependency (longtail[timm])")


@pytest.mark.parametrize("name, options, dim", [
    ("torchvision/mobilenet_v3_small", {}, 1024),  # classifier[3]
    ("torchvision/convnext_tiny", {}, 768),  # classifier[2]
    ("torchvision/vit_b_16", {"image_size": 32}, 768),  # heads.head
    ("timm/resnet18", {}, 512),
    ("timm/vit_tiny_patch16_224", {"img_size": 32, "patch_size": 8}, 192),
])
def test_the_classifier_is_found_and_replaced(name, options, dim):
    model = create_model(name, num_classes=7, in_channels=3, **options).eval()
    assert model.feature_dim == dim and model.head.out_features == 7
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 7)
    assert model.backbone(torch.randn(2, 3, 32, 32)).shape == (2, dim)  # the backbone ends in features


def test_local_weights_load_into_the_backbone(tmp_path):
    reference = torchvision.models.get_model("mobilenet_v3_small", weights=None).eval()
    torch.save(reference.state_dict(), tmp_path / "mobilenet.pt")
    model = create_model("torchvision/mobilenet_v3_small", 4, pretrained_path=str(tmp_path / "mobilenet.pt")).eval()
    reference.classifier[3] = torch.nn.Identity()
    x = torch.randn(2, 3, 64, 64)
    torch.testing.assert_close(model.backbone(x), reference(x))
    full = timm.create_model("resnet18", pretrained=False)
    torch.save(full.state_dict(), tmp_path / "resnet18.pt")
    timm_model = create_model("timm/resnet18", 4, pretrained_path=str(tmp_path / "resnet18.pt")).eval()
    full.reset_classifier(0)
    torch.testing.assert_close(timm_model.backbone(x), full.eval()(x))
    torch.save({"not": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="does not fit timm/resnet18: missing"):
        create_model("timm/resnet18", 4, pretrained_path=str(tmp_path / "other.pt"))


def test_a_timm_backbone_trains_through_the_cli(tmp_path, capsys):
    assert main(["train", *tiny_args(tmp_path, "timm", "model=timm/resnet18", "epochs=1", "loss=balanced_softmax"),
                 "--quiet"]) == 0
    metrics = read_metrics(tmp_path / "timm")
    assert metrics["finished"] and metrics["model"] == "timm/resnet18"
    assert main(["train", *tiny_args(tmp_path, "bad", "model=timm/resnet_nope")]) == 2
    assert "timm has no model 'resnet_nope'" in capsys.readouterr().err
    assert main(["train", *tiny_args(tmp_path, "bad2", "model=resnet_nope")]) == 2
    assert "or timm/<name>, torchvision/<name>" in capsys.readouterr().err
