"""The paper's IWSLT14 De-En setup: 6+6 layers, 6 heads in all 18 attention modules (108 heads).

``neuroprune_iwslt_de_en``: embed 384 (head dim 64; 512 is not divisible by 6), FFN 1024.
``neuroprune_iwslt_de_en_narrow``: embed 192, FFN 512, the same 108 heads, for CPU budgets.
Everything else is fairseq's ``transformer_iwslt_de_en``.
"""
from fairseq.models import register_model_architecture
from fairseq.models.transformer.transformer_legacy import transformer_iwslt_de_en


def _six_head_iwslt(args, embed_dim: int, ffn_dim: int) -> None:
    args.encoder_embed_dim = getattr(args, "encoder_embed_dim", embed_dim)
    args.encoder_ffn_embed_dim = getattr(args, "encoder_ffn_embed_dim", ffn_dim)
    args.encoder_attention_heads = getattr(args, "encoder_attention_heads", 6)
    args.encoder_layers = getattr(args, "encoder_layers", 6)
    args.decoder_embed_dim = getattr(args, "decoder_embed_dim", embed_dim)
    args.decoder_ffn_embed_dim = getattr(args, "decoder_ffn_embed_dim", ffn_dim)
    args.decoder_attention_heads = getattr(args, "decoder_attention_heads", 6)
    args.decoder_layers = getattr(args, "decoder_layers", 6)
    transformer_iwslt_de_en(args)


@register_model_architecture("transformer", "neuroprune_iwslt_de_en")
def neuroprune_iwslt_de_en(args):
    _six_head_iwslt(args, embed_dim=384, ffn_dim=1024)


@register_model_architecture("transformer", "neuroprune_iwslt_de_en_narrow")
def neuroprune_iwslt_de_en_narrow(args):
    _six_head_iwslt(args, embed_dim=192, ffn_dim=512)
