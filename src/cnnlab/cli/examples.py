"""The examples and the longer explanations at the end of each command's --help (the parser's
epilogs), kept apart from the flags in parser.py."""

TRAIN_EXAMPLES = """\
examples:
  cnnlab train                                  # fmnist-cnn on Fashion-MNIST, the default recipe
  cnnlab train --recipe fast --seed 1           # a named recipe on the full Fashion-MNIST
  cnnlab train --model lenet5 --epochs 10 --optimizer adam --lr 1e-3
  cnnlab train --data cifar10 --model fmnist-cnn --augment flip-crop --out runs/cifar
  cnnlab train --augment flip,crop=2,rotate=15,brightness=0.2
  cnnlab train --data photos/ --input 3x64x64   # photos/<class>/*.jpg, or photos/train/ and test/
  cnnlab train -c recipe.toml --epochs 20       # flags override the file
  cnnlab train --resume runs/cifar --epochs 30  # continue a run (--epochs is the total)

The default recipe: SGD with Nesterov momentum 0.9, lr 0.05, weight decay 5e-4, batch 128,
cosine schedule with warm-up over the first tenth, 5 epochs, no augmentation (other optimizers'
default lr: adam/adamw/rmsprop 1e-3, adagrad 0.01). Data: the full Fashion-MNIST if installed
(sudo apt-get install dataset-fashion-mnist), else the bundled 10,000-image subset. --data takes
a name (fashion-mnist, mnist, cifar10, fashion-mnist-mini) or a folder: IDX files, CIFAR-10 .bin
files, or an image folder with one subfolder per class (then 1 image in 10 is held out for
testing unless it has train/ and test/ subfolders).

Named recipes (--recipe NAME): fast, strong and long, TOML files of these options shipped with
cnnlab: fmnist-cnn-bn on the full Fashion-MNIST (dataset-fashion-mnist), SGD lr 0.1 on a cosine
schedule, label smoothing 0.1, mirroring, flip TTA; fast trains 15 epochs, strong 30, long 50
with ±1-pixel shifts as well. A -c FILE (it may name a recipe: recipe = "fast") and flags
override the recipe's values.

Train, validation, test: --val-split (default 0.1) of the training images, stratified by class
and drawn from the seed after --limit, is held out for validation (a folder's own val/ is used
instead): the val_ columns, early stopping and best.safetensors come from it. The test split is
evaluated once, after training. The run directory gets metrics.csv, last.ckpt.safetensors,
best.safetensors, model.safetensors and config.toml (its options, usable with -c). A config file
holds the long flags as keys: epochs = 10, batch-size = 64, lr = 0.1.

--augment SPEC: terms separated by commas, applied to each training batch in that order, each
with an optional value (its default in brackets); random per image, from --seed:
  flip[=P]            mirror left-right with probability P (0.5)
  crop[=PAD]          shift by up to ±PAD pixels, zero padded (2)
  erase[=P]           blank a random rectangle with probability P (0.5)
  rotate[=DEG]        rotate by up to ±DEG degrees, bilinear, border pixels repeated (15)
  resized-crop[=MIN]  a random part of MIN-100% of the area, aspect 3/4-4/3, stretched back (0.08)
  brightness[=B]      pixels times a factor in [1-B, 1+B], clipped to black-white (0.2)
  contrast[=C]        pixels pulled towards or pushed from the image's mean grey by [1-C, 1+C] (0.2)
Presets: none, flip-crop (= flip,crop=2), flip-crop-erase (= flip,crop=2,erase). The run's
config.toml records the spec with every value written out, e.g. augment = "flip=0.5,rotate=15".

Transfer learning: --model also takes a model file (a run's model.safetensors). Its last Dense
layer, the head, is replaced by a fresh one when the data has another number of classes (or
other class names); the layers before it are the body. --freeze body trains the head only,
--freeze N freezes the first N layers (as `cnnlab summary` lists them); frozen layers get no
update and their BatchNorm layers keep normalising with their running statistics (inference
mode), the usual trap. --body-lr-scale S trains every layer, the body at S times the learning
rate (an optimizer parameter group); with --freeze N it applies to the body's unfrozen layers.
  cnnlab train --model runs/a/model.safetensors --data photos/ --freeze body --epochs 3
  cnnlab train --model runs/a/model.safetensors --data photos/ --body-lr-scale 0.1
"""

FEATURES_EXAMPLES = """\
examples:
  cnnlab features model.safetensors --layer relu_3 shirt.png boot.png --out feats.npz
  cnnlab features model.safetensors photos/queries/ --neighbours photos/all --top 8
  cnnlab features model.safetensors q.png --layer residual_2.branch.conv2d_1 --out f.npz

--layer names a layer as `cnnlab summary MODEL` lists it, or one inside a container by its
qualified name (residual_2.branch.conv2d_1); the default is the layer before the head, the
features the classifier sees. Images are read as `cnnlab predict` reads them; an IMAGE that is a
folder stands for every image file under it. --out FILE.npz holds features (N, ...) float32,
files (N,) and layer and model (strings), plain arrays: NumPy's default, safe loader reads it.
--neighbours FOLDER writes --page (default neighbours.html), one self-contained HTML file: each
query image and the --top images under FOLDER nearest to it in the layer's features, flattened,
by cosine distance 1 − a·b/(‖a‖·‖b‖) (--distance euclidean: ‖a − b‖). A query that is itself in
FOLDER is not its own neighbour. Exit status 1 if an image could not be read (the rest are used).
"""

EVALUATE_EXAMPLES = """\
examples:
  cnnlab evaluate runs/fmnist-cnn-20250101-120000/model.safetensors
  cnnlab evaluate model.safetensors --data mnist --split test
  cnnlab evaluate model.safetensors --data photos/            # the tenth train held out
  cnnlab evaluate model.safetensors --data photos/test --split all

Without --data: the data recorded in the model's run directory (config.toml), else Fashion-MNIST.
An image folder without train/ and test/ subfolders is split as cnnlab train split it: --split
test (the default) scores the held-out tenth of each class (the 10th, 20th, ... file by name),
--split train the rest, --split all every image.
"""

PREDICT_EXAMPLES = """\
examples:
  cnnlab predict model.safetensors shirt.jpg boot.png
  cnnlab predict model.safetensors *.png --json --top 3

Each image is converted to the model's input with Pillow: grayscale or RGB, brought to its size
by the model's recorded rule (stretched, or its shorter side fitted and the middle cut out;
stderr says what changed). Colours are not inverted: Fashion-MNIST and MNIST show light
objects on a dark background, so invert a photo of a dark object on a light background first.
--json prints one object a line: {"file": ..., "top": [{"class": ..., "prob": ...}, ...]}
(--top K entries, most likely first).
"""

SUMMARY_EXAMPLES = """\
examples:
  cnnlab summary fmnist-cnn
  cnnlab summary lenet5 --input 3x32x32 --classes 100
  cnnlab summary runs/x/model.safetensors
"""

EXPLAIN_EXAMPLES = """\
examples (the lecture's; --input is H×W×D, depth last, as the lecture writes it):
  cnnlab explain conv --input 32x32x3 --filters 10 --size 5 --stride 1 --pad 2
  cnnlab explain conv --input 14x14x192 --filters 192 --size 3 --pad 1 --groups 192
  cnnlab explain pool --input 7x7x3 --size 3 --stride 3

A configuration that does not fit is explained too, with the arithmetic and what would fit;
the exit status is 0 whenever an explanation is printed.
"""

REPORT_EXAMPLES = """\
examples:
  cnnlab report runs/fmnist                     # writes runs/fmnist/report.html
  cnnlab report runs/photos --data photos/      # test images from another place

One HTML file, images inline, nothing fetched: the model summary, the training curves, the
confusion matrix, the per-class accuracy, the first layer's filters, the feature maps of a few
test images and the most confident mistakes. cnnlab train writes it at the end of every run.
Without --data: the data recorded in the run's config.toml.
"""

DEMO_EXAMPLES = """\
examples:
  cnnlab demo conv                              # the lecture's: 5x5x3 input, 2 filters, stride 2, pad 1
  cnnlab demo conv --out demo                   # the same, and demo/demo.html and demo/demo.gif
  cnnlab demo conv --input 7x7x1 --filters 1 --size 3 --stride 2 --pad 0 --out demo7
  cnnlab demo conv --seed 3                     # the lecture's shapes, random numbers

Prints the numbers as the lecture's slide shows them: the input volume (padded), each filter
W0, W1, ... with its bias, and the output volume, one depth slice x[:, :, d] a grid. With --out,
also writes DIR/demo.html (open it in a browser: "toggle movement", prev and next; keys:
space, ← →) and DIR/demo.gif, walking through every output position with its dot product.
The lecture's configuration uses its numbers; others (or --seed) use small random integers.
The outputs are computed by cnnlab's Conv2D. --input is H×W×D, depth last, as the lecture
writes it.
"""


LR_FIND_EXAMPLES = """\
examples:
  cnnlab lr-find                                # fmnist-cnn on Fashion-MNIST, SGD: lr-find.png
  cnnlab lr-find --model lenet5 --optimizer adam --out lenet-lr.png
  cnnlab lr-find --data photos/ --input 3x64x64 --limit 2000

The learning-rate range test (Smith 2017): one mini-batch per step, the learning rate growing
geometrically from --start to --end over --steps steps, until the loss passes 4 times its
lowest value. The model's weights are the zoo model's from --seed; the optimizer's other
settings are cnnlab train's defaults (or --momentum, --weight-decay). Prints the suggested
rate and the rule that chose it: the learning rate at the minimum of the smoothed loss
(exponential moving average, β = 0.98, bias-corrected), divided by 10. The plot (PNG) shows
the loss, its smoothed curve, the minimum and the suggestion on a log scale.
"""

EXPORT_EXAMPLES = """\
examples:
  cnnlab export runs/fmnist/model.safetensors --onnx fmnist.onnx
  cnnlab export model.safetensors --onnx model.onnx --opset 18

Needs the optional extra: pip install "cnnlab[onnx]". The ONNX graph takes `input`, float32
(N, C, H, W) with any batch size N, normalised as the model's preprocessing says, and gives
`output`, the class scores (no softmax). The file's metadata_props hold "preprocess" (mean,
std, scale, channels, resize, input_size) and "class_names" as JSON. The file is written
atomically and checked with onnx.checker; a layer that cannot be exported is named.
"""

CONVERT_EXAMPLES = """\
examples:
  cnnlab convert resnet18.safetensors --model resnet18 --out resnet18-imagenet.safetensors
  cnnlab convert model.safetensors --model se-resnet50 --out se50.safetensors   # timm/seresnet50
  cnnlab convert mine.safetensors --model resnet50 --classes classes.txt --out mine-cnnlab.safetensors
  cnnlab predict resnet18-imagenet.safetensors cat.jpg

WEIGHTS is a state_dict saved with safetensors (never a pickled .pth): the Hugging Face hub's
timm models publish model.safetensors (e.g. timm/resnet18.a1_in1k); a torchvision .pth becomes
one with safetensors.torch.save_file(torch.load(PTH), OUT) in your own environment. Names and
shapes are checked against --model; the number of classes is read from the file's classifier.
The model file records the preprocessing the published accuracies assume: ImageNet's mean and
std (GoogLeNet: 0.5 and 0.5), the shorter side resized to --resize (default 256 for a 224×224
input), then the centre crop; and the class names (--classes: imagenet, the default for 1,000
classes, or a text file with one name a line).
"""
