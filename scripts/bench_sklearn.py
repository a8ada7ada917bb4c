"""gpunn's MLPClassifier and MLPRegressor against scikit-learn's, on the same data with the same settings.

    python scripts/bench_sklearn.py --data-dir /tmp/mnist           # digits and the MNIST split
    python scripts/bench_sklearn.py --datasets digits --repeats 5
    python scripts/bench_sklearn.py --datasets diabetes --solver lbfgs --alpha 1000 --epochs 1000
    python scripts/bench_sklearn.py --datasets friedman              # 20,000 samples of make_friedman1

``digits`` and ``mnist`` are classification (test accuracy); ``diabetes`` (scikit-learn's,
features standardised on the training part, a 75/25 split by random_state 0) and
``friedman`` (``make_friedman1``, 20,000 samples, 10 features, noise 1, a 16,000/4,000
split) are regression (test R^2), trained by the regressors.

Both estimators get the same hidden layers, activation, solver, step size, batch size,
L2 penalty and number of epochs: ``tol=0`` and ``n_iter_no_change=inf`` switch the
stopping rule off, so each trains exactly ``--epochs`` epochs.  The data are float32
(scikit-learn then trains in float32 too) and unscaled beyond what the loader does
(pixels in [0, 1]), with the same number of BLAS threads (``--threads``, default 1).
Each (estimator, seed) pair is fitted once per repeat, the
estimators taking turns; the table gives the median fit time over all fits and the
mean test accuracy over the seeds.  What still differs is stated in gpunn/sklearn.py:
two softmax units against one logistic unit for binary problems (none here), where Adam
adds epsilon, the weight decay on the biases, and the regressor's standardised targets.
With ``lbfgs`` the stopping rule is L-BFGS's own (``tol``: 0 here; ``--epochs`` is
``max_iter``, the number of iterations), so both may stop before it.
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import numpy as np
from threadpoolctl import threadpool_limits
from sklearn.exceptions import ConvergenceWarning
from sklearn.datasets import load_diabetes, make_friedman1
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier as SklearnMLP
from sklearn.neural_network import MLPRegressor as SklearnRegressor
from sklearn.preprocessing import StandardScaler

import gpunn
from gpunn.data.datasets import Dataset
from gpunn.sklearn import MLPClassifier as GpunnMLP
from gpunn.sklearn import MLPRegressor as GpunnRegressor

REGRESSION = ("diabetes", "friedman")


def settings(args, seed: int) -> dict:
    common = dict(hidden_layer_sizes=tuple(args.hidden), activation=args.activation, solver=args.solver,
                  learning_rate_init=args.lr, batch_size=args.batch_size, alpha=args.alpha, max_iter=args.epochs,
                  tol=0.0, n_iter_no_change=np.inf, random_state=seed)
    if args.solver == "sgd":
        common.update(momentum=0.9, nesterovs_momentum=True)
    if args.solver == "lbfgs":
        common = {key: value for key, value in common.items() if key not in ("batch_size", "n_iter_no_change")}
    return common


def regression_data(name: str) -> Dataset:
    """A regression set: scikit-learn's diabetes (features standardised) or make_friedman1."""
    if name == "diabetes":
        X, y = load_diabetes(return_X_y=True)
        X_train, X_test, y_train, y_test = train_test_split(X, y, random_state=0)
        scaler = StandardScaler().fit(X_train)
        X_train, X_test = scaler.transform(X_train), scaler.transform(X_test)
    else:
        X, y = make_friedman1(n_samples=20_000, n_features=10, noise=1.0, random_state=0)
        X_train, X_test, y_train, y_test = X[:16_000], X[16_000:], y[:16_000], y[16_000:]
    return Dataset(name, X_train, y_train, X_test, y_test, 0, task="regression")


def run(args, name: str, data) -> list[str]:
    X_train, X_test = data.X_train.astype(np.float32), data.X_test.astype(np.float32)
    ours, theirs = (GpunnRegressor, SklearnRegressor) if name in REGRESSION else (GpunnMLP, SklearnMLP)
    makers = {"gpunn": lambda seed: ours(**settings(args, seed), backend=args.backend, dtype="float32"),
              "scikit-learn": lambda seed: theirs(**settings(args, seed))}
    times = {key: [] for key in makers}
    scores = {key: {} for key in makers}
    for _ in range(args.repeats):
        for seed in range(args.seeds):
            for key, make in makers.items():
                est = make(seed)
                started = time.perf_counter()
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", ConvergenceWarning)
                    est.fit(X_train, data.y_train)
                times[key].append(time.perf_counter() - started)
                scores[key][seed] = est.score(X_test, data.y_test)
                assert est.n_iter_ == args.epochs or args.solver == "lbfgs"
    rows = []
    base = statistics.median(times["scikit-learn"])
    for key in makers:
        accuracy = list(scores[key].values())
        spread = f" ± {statistics.stdev(accuracy):.4f}" if len(accuracy) > 1 else ""
        median = statistics.median(times[key])
        rows.append(f"| {name} ({len(X_train):,} / {len(X_test):,}) | {key} | {np.mean(accuracy):.4f}{spread} | "
                    f"{median:.2f} | {base / median:.2f} |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", default="digits,mnist", help="digits and/or mnist (the IDX files in --data-dir)")
    parser.add_argument("--data-dir", default=None, help="folder with the MNIST IDX files")
    parser.add_argument("--hidden", type=int, nargs="+", default=[100])
    parser.add_argument("--activation", default="relu")
    parser.add_argument("--solver", default="adam")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--batch-size", type=int, default=200)
    parser.add_argument("--alpha", type=float, default=1e-4)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--seeds", type=int, default=3, help="random_state 0..seeds-1, accuracy averaged")
    parser.add_argument("--repeats", type=int, default=1, help="fits per (estimator, seed), for the timing")
    parser.add_argument("--backend", default="numpy")
    parser.add_argument("--threads", type=int, default=1,
                        help="BLAS threads for both (on a shared, loaded machine more threads than free cores "
                             "slow both down many times)")
    args = parser.parse_args()
    threadpool_limits(args.threads)
    print(f"hidden {args.hidden}, {args.activation}, {args.solver} lr {args.lr:g}, batch {args.batch_size}, "
          f"alpha {args.alpha:g}, {args.epochs} epochs, float32, seeds 0..{args.seeds - 1}, gpunn on {args.backend}, "
          f"{args.threads} BLAS thread(s)")
    print("| data (train / test) | estimator | test accuracy or R^2 | fit seconds (median) | speed vs scikit-learn |")
    print("|---|---|---|---|---|")
    for name in args.datasets.split(","):
        options = {"data_dir": args.data_dir} if name != "digits" and args.data_dir else {}
        data = regression_data(name) if name in REGRESSION else gpunn.load_dataset(name, **options)
        for row in run(args, name, data):
            print(row, flush=True)


if __name__ == "__main__":
    main()
