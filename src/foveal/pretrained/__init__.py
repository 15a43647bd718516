"""Public checkpoints as Foveal models: timm's ViT and DeiT weights from a Hugging Face hub id
(`hf-hub:timm/deit_tiny_patch16_224.fb_in1k`), a folder in timm's `save_for_hf` layout (config.json
and model.safetensors) or a single weights file, read into a timm-vit config, its state dict, its
classes and its preprocessing (checkpoint.py).

    from foveal.pretrained.checkpoint import is_public_checkpoint, read_public_checkpoint
    source = read_public_checkpoint("hf-hub:timm/deit_tiny_patch16_224.fb_in1k")
    model = build_model(source.config); model.load_state_dict(source.state)

Over the models and data, under the predictor (which loads them as it loads a saved model). This
package re-exports nothing, so that importing it pulls in neither timm nor huggingface_hub.
"""
