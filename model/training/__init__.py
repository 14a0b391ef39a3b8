"""Making and measuring models: the datasets (MNIST, colour emoji), training (and the engine,
schedule, history and distributed runs it is made of), evaluation, and the measurements the
README reports (recognition, hole-aware completion, benchmarks, showcase sheets). The
window (gui/) never imports it."""
