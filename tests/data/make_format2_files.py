"""Write format-2 model fixtures with main's code (e1c0475)."""
import numpy as np, gpunn
data = gpunn.load_dataset("digits")
X = data.X_test[:8]
a = gpunn.Network([64, 30, 10], seed=0, backend="numpy")
a.fit(data.X_train, data.y_train, epochs=3, batch_size=10, lr=3.0)
a.save("tests/data/format2_tutorial.npz")
b = gpunn.Network([64, 32, 10], activation="relu", output_activation="softmax", backend="numpy", seed=1, scale="standard")
b.fit(data.X_train, data.y_train, epochs=3, batch_size=32, optimizer="adam", lr=1e-3)
b.save("tests/data/format2_modern.npz")
np.savez("tests/data/format2_expected.npz", X=X, tutorial=a.predict_proba(X), modern=b.predict_proba(X),
         tutorial_pred=a.predict(X), modern_pred=b.predict(X))
print(a.predict_proba(X)[:2], b.predict(X), data.y_test[:8])
