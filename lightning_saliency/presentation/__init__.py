"""Torch-free presentation shared by the publisher (TensorBoard, W&B, MLflow) and the HTML report:
heatmap colours and scales (``render``) and the evidence and markdown tables (``tables``)."""
