"""SAM's mask decoder for point prompts, with the work shared by every prompt done once per image.

Everything mode (paper 3.1) runs SAM's light mask decoder once per point prompt, 1024 times per
image at 32 x 32 points; on a CPU that is most of the time of a twin. segment-anything's
``MaskDecoder.predict_masks`` repeats the image embedding for every prompt and projects all
``N = 64 x 64`` image tokens again in every attention layer. :class:`PointDecoder` computes the
same function (same weights, same outputs up to floating-point rounding) with less work:

* **Once per image**: the dense prompt embedding (``no_mask_embed``: constant for point prompts)
  added to the image embedding, and the first two-way layer's projections of the image tokens
  (token -> image keys and values, image -> token queries), which do not depend on the prompt.
* **Low-rank attention**: a prompt has ``T = 7`` tokens (IoU token, 4 mask tokens, the point and
  SAM's padding point) against ``N = 4096`` image tokens. Where the image side changes per prompt
  (the second layer and the final attention), the ``T``-side is projected into the image side's
  channels instead of projecting all ``N`` image tokens: with ``H`` heads, the scores
  ``Q_h K_h^T = (Q_h W_k,h) X^T`` (the key bias adds a per-row constant that softmax ignores), the
  values ``A_h V_h = (A_h X) W_v,h^T + b_v,h`` (attention rows sum to one), and the image -> token
  output ``sum_h A_h (V_h W_o,h^T) + b_o``. Each ``N x C x C/2`` projection becomes an
  ``N x C x (H T)`` product: ``H T = 56`` against ``C / 2 = 128`` for SAM.
* **Only the masks asked for**: multi-mask output skips the single-mask token's product, and
  :meth:`PointDecoder.decode` upscales only prompts with a mask whose predicted IoU passes the
  threshold (the IoU head reads the IoU token alone, before any upscaling).
* **bf16 image side** (``precision = "bf16"``) on CPUs with native bf16 (AMX, AVX512-BF16): the
  tensors over image tokens and upscaled masks are held and multiplied in bf16 (oneDNN accumulates
  in fp32), which halves the memory traffic that bounds this decoder on a CPU; the prompt tokens,
  the hypernetwork MLPs and the IoU head stay in fp32. Not the default: near SAM's thresholds
  (predicted IoU, stability) bf16 rounding drops a few masks that segment-anything keeps.

Masks from this decoder are not bit-identical to segment-anything's (sums run in another order);
``perception.decoder = "exact"`` keeps segment-anything's own forward pass.
``benchmarks/everything_speed.py`` measures both against ``SamAutomaticMaskGenerator``.
"""

from __future__ import annotations

import functools
import math
from typing import Any

__all__ = ["LOGITS_PER_TOKEN", "PointDecoder", "native_bf16", "resize_logits", "visible_tokens"]

LOGITS_PER_TOKEN = 4
"""Low-resolution logits per token along each side: SAM's ``output_upscaling`` is two stride-2
transposed convolutions, so a 64 x 64 token grid gives 256 x 256 logits (upstream ``MaskDecoder``)."""


def native_bf16() -> bool:
    """Whether this CPU multiplies bf16 matrices natively (AMX tiles or AVX512-BF16)."""
    import torch

    cpu = getattr(torch, "cpu", None)
    checks = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    try:
        return any(bool(getattr(cpu, name)()) for name in checks if hasattr(cpu, name))
    except RuntimeError:  # pragma: no cover - a build without these probes
        return False


class PointDecoder:
    """SAM's ``MaskDecoder`` for batches of single point prompts on one image embedding.

    Tensors over the ``N`` image tokens (and the upscaled masks) are held in the working dtype,
    bf16 with ``precision = "bf16"``; the few prompt tokens, their MLPs and the IoU head stay in
    fp32, so predicted IoUs keep fp32 resolution near SAM's thresholds.

    Args:
        model: a ``segment_anything`` / ``mobile_sam`` ``Sam`` whose ``mask_decoder`` uses
            SAM's ``TwoWayTransformer`` (any depth >= 1, any width and head count).
        precision: ``"fp32"`` or ``"bf16"``.

    Raises:
        ValueError: for another precision.

    Use :meth:`set_image` once per image embedding, then call the decoder on prompt batches.
    """

    def __init__(self, model: Any, precision: str = "fp32") -> None:
        import torch

        if precision not in ("fp32", "bf16"):
            raise ValueError(f"precision must be fp32 or bf16, got {precision!r}")
        self.torch = torch
        self.model = model
        self.decoder = model.mask_decoder
        self.transformer = self.decoder.transformer
        self.precision = precision
        self.dtype = torch.bfloat16 if precision == "bf16" else torch.float32
        self._image: dict[str, Any] | None = None
        self._cast: dict[int, Any] = {}
        self._upscaling = _upscaling_as_linear(self.decoder.output_upscaling)

    # ------------------------------------------------------------------ per image
    def set_image(self, features: Any) -> None:
        """Precompute what every prompt on this ``1 x C x h x w`` image embedding shares.

        Nothing to do when it holds this very embedding already (a restored one, for instance).
        """
        if self._image is not None and self._image["features"] is features:
            return
        torch = self.torch
        prompt_encoder = self.model.prompt_encoder
        with torch.no_grad():
            _, c, h, w = features.shape
            dense = prompt_encoder.no_mask_embed.weight.reshape(1, -1, 1, 1)
            keys = (features + dense).flatten(2).permute(0, 2, 1)[0]  # N x C
            key_pe = prompt_encoder.get_dense_pe().flatten(2).permute(0, 2, 1)[0]  # N x C
            first = self.transformer.layers[0]
            t2i, i2t = first.cross_attn_token_to_image, first.cross_attn_image_to_token
            with_pe = keys + key_pe
            low = self.dtype

            def heads_t(x: Any, heads: int) -> Any:  # N x (H d) -> H x d x N
                return _heads(x, heads).transpose(-1, -2).contiguous().to(low)

            self._image = {
                "features": features,
                "shape": (c, h, w),
                "keys": keys.to(low).contiguous(),  # N x C
                "key_pe_t": key_pe.T.contiguous().to(low),  # C x N
                "k0": heads_t(t2i.k_proj(with_pe), t2i.num_heads),  # H x d x N
                "v0": _heads(t2i.v_proj(keys), t2i.num_heads).contiguous().to(low),  # H x N x d
                "q0": heads_t(i2t.q_proj(with_pe), i2t.num_heads),  # H x d x N
            }

    def reset(self) -> None:
        """Forget the image."""
        self._image = None

    # ------------------------------------------------------------------ per batch
    def __call__(self, sparse: Any, multimask_output: bool = True) -> tuple[Any, Any]:
        """Low-resolution mask logits and predicted IoUs for a batch of point prompts.

        Args:
            sparse: ``B x P x C`` sparse prompt embeddings (``prompt_encoder(points=...)[0]``).
            multimask_output: three masks per prompt (SAM's everything mode), else one.

        Returns:
            ``(masks, iou_pred)``: fp32 ``B x M x 4h x 4w`` logits and ``B x M`` predicted IoUs,
            ``M`` being 3 or 1, as ``MaskDecoder.forward`` returns them.

        Raises:
            RuntimeError: when no image was set.
        """
        masks, iou_pred, _ = self.decode(sparse, multimask_output)
        return masks.reshape(iou_pred.shape[0], iou_pred.shape[1], *masks.shape[-2:]), iou_pred

    def decode(
        self,
        sparse: Any,
        multimask_output: bool = True,
        min_iou: float | None = None,
        visible: tuple[int, int] | None = None,
    ) -> tuple[Any, Any, Any]:
        """Like :meth:`__call__`, computing only the masks whose predicted IoU passes ``min_iou``.

        The predicted IoU comes from the IoU token, before any mask is upscaled, so prompts none
        of whose masks pass are never upscaled: SAM's everything mode drops those masks anyway
        (``pred_iou_thresh``), as the object-level re-prompts do (the theta filter).

        Upscaling is per image token (each token becomes a ``4 x 4`` block of logits), so
        ``visible`` limits it to the top-left ``rows x cols`` tokens: the part of SAM's padded
        square input that holds the image (:func:`visible_tokens`); the other logits are never
        read by SAM's postprocessing.

        Args:
            sparse: ``B x P x C`` sparse prompt embeddings.
            multimask_output: three masks per prompt, else one.
            min_iou: keep masks with predicted IoU strictly above this; None keeps all.
            visible: ``(rows, cols)`` of the ``h x w`` token grid to upscale; None: all.

        Returns:
            ``(masks, iou_pred, keep)``: fp32 ``K x 4 rows x 4 cols`` logits of the kept masks
            (``4h x 4w`` without ``visible``), in prompt-major order, the ``B x M`` predicted
            IoUs of all, and the ``B x M`` boolean ``keep`` (``K = keep.sum()``).

        Raises:
            RuntimeError: when no image was set.
            ValueError: for ``visible`` outside the token grid.
        """
        torch = self.torch
        if self._image is None:
            raise RuntimeError("PointDecoder: set_image() first")
        image = self._image
        _, grid_h, grid_w = image["shape"]
        if visible is not None and not (0 < visible[0] <= grid_h and 0 < visible[1] <= grid_w):
            raise ValueError(f"visible must be within the {grid_h} x {grid_w} token grid, got {visible}")
        decoder = self.decoder
        transformer = self.transformer
        with torch.no_grad():
            batch = sparse.shape[0]
            output_tokens = torch.cat([decoder.iou_token.weight, decoder.mask_tokens.weight], dim=0)
            tokens = torch.cat((output_tokens.unsqueeze(0).expand(batch, -1, -1), sparse), dim=1)
            queries, keys = self._first_layer(tokens, image)
            key_pe_t = image["key_pe_t"]
            for layer in transformer.layers[1:]:
                queries, keys = self._layer(layer, queries, keys, tokens, key_pe_t)
            attn = self._token_to_image(
                transformer.final_attn_token_to_image, queries + tokens, keys, key_pe_t
            )
            queries = transformer.norm_final_attn(queries + attn)
            wanted = range(1, decoder.num_mask_tokens) if multimask_output else range(0, 1)
            iou_pred = decoder.iou_prediction_head(queries[:, 0, :])[:, wanted.start : wanted.stop]
            keep = torch.ones_like(iou_pred, dtype=torch.bool) if min_iou is None else iou_pred > min_iou
            rows = keep.any(dim=1)
            if not bool(rows.all()):
                queries, keys = queries[rows], keys[rows]
            masks = self._masks(queries, keys, wanted, visible)  # R x M x 4 rows x 4 cols
            return masks[keep[rows]], iou_pred, keep

    def _first_layer(self, tokens: Any, image: dict[str, Any]) -> tuple[Any, Any]:
        """The first two-way block: self-attention, then both cross attentions on shared image tokens.

        The image side is the same for every prompt, so both cross attentions are per-head
        products of all the batch's tokens (``H x BT x d``) with the precomputed projections
        (``H x d x N``): no per-prompt copy of anything over the image tokens.
        """
        torch = self.torch
        low = self.dtype
        layer = self.transformer.layers[0]
        if layer.skip_first_layer_pe:
            queries = layer.self_attn(q=tokens, k=tokens, v=tokens)
        else:
            q = tokens + tokens
            queries = tokens + layer.self_attn(q=q, k=q, v=tokens)
        queries = layer.norm1(queries)
        b, t = tokens.shape[:2]
        # token -> image: H x BT x d against H x d x N
        t2i = layer.cross_attn_token_to_image
        q = _heads(t2i.q_proj(queries + tokens), t2i.num_heads) * (
            1.0 / math.sqrt(t2i.internal_dim // t2i.num_heads)
        )
        q = q.transpose(0, 1).reshape(t2i.num_heads, b * t, -1).to(low)
        weights = torch.softmax(torch.bmm(q, image["k0"]), dim=-1)  # H x BT x N
        mixed = torch.bmm(weights, image["v0"]).float().reshape(t2i.num_heads, b, t, -1).transpose(0, 1)
        queries = layer.norm2(queries + t2i.out_proj(_merge(mixed)))
        queries = layer.norm3(queries + layer.mlp(queries))
        # image -> token: H x BT x d against H x d x N, softmax over each prompt's T tokens
        i2t = layer.cross_attn_image_to_token
        heads = i2t.num_heads
        k = _heads(i2t.k_proj(queries + tokens), heads) * (1.0 / math.sqrt(i2t.internal_dim // heads))
        v = _heads(i2t.v_proj(queries), heads)
        k = k.transpose(0, 1).reshape(heads, b * t, -1).to(low)
        scores = torch.bmm(k, image["q0"]).reshape(heads, b, t, -1)  # H x B x T x N
        weights = torch.softmax(scores, dim=2).transpose(0, 1).reshape(b, heads * t, -1)  # B x HT x N
        keys = self._norm(layer.norm4, self._image_out(i2t, image["keys"], weights, v))
        return queries, keys

    def _layer(self, layer: Any, queries: Any, keys: Any, query_pe: Any, key_pe_t: Any) -> tuple[Any, Any]:
        """A later two-way block, with per-prompt image tokens ``keys`` (B x N x C)."""
        q = queries + query_pe
        queries = layer.norm1(queries + layer.self_attn(q=q, k=q, v=queries))
        attn = self._token_to_image(layer.cross_attn_token_to_image, queries + query_pe, keys, key_pe_t)
        queries = layer.norm2(queries + attn)
        queries = layer.norm3(queries + layer.mlp(queries))
        weights, v = self._image_to_token(layer.cross_attn_image_to_token, keys, key_pe_t, queries, query_pe)
        keys = self._norm(layer.norm4, self._image_out(layer.cross_attn_image_to_token, keys, weights, v))
        return queries, keys

    def _with_pe(self, wide: Any, keys: Any, key_pe_t: Any, start: Any = None) -> Any:
        """``start + wide @ (keys + key_pe)^T`` (B x HT x N) without forming ``keys + key_pe``.

        The positional part ``wide @ key_pe^T`` shares its right side across the batch: one
        product of all ``B HT`` rows.
        """
        b, rows, channels = wide.shape
        pe_part = (wide.reshape(b * rows, channels) @ key_pe_t).reshape(b, rows, -1)
        if start is not None:
            pe_part = pe_part + start
        return self.torch.baddbmm(pe_part, wide, keys.transpose(1, 2))

    def _token_to_image(self, attn: Any, q_in: Any, keys: Any, key_pe_t: Any) -> Any:
        """``attn(q=q_in, k=keys + key_pe, v=keys)`` with per-prompt image tokens, in low-rank form."""
        torch = self.torch
        heads, (out_dim, channels) = attn.num_heads, attn.k_proj.weight.shape
        d = out_dim // heads
        q = _heads(attn.q_proj(q_in), heads) * (1.0 / math.sqrt(d))  # B x H x T x d
        wk = attn.k_proj.weight.reshape(heads, d, channels)  # H x d x C
        q_wide = torch.matmul(q, wk).flatten(1, 2).to(self.dtype)  # B x HT x C
        weights = torch.softmax(self._with_pe(q_wide, keys, key_pe_t), dim=-1)  # B x HT x N
        mixed = torch.bmm(weights, keys).float()  # B x HT x C
        b, t = q.shape[0], q.shape[2]
        wv = attn.v_proj.weight.reshape(heads, d, channels)
        values = torch.matmul(mixed.reshape(b, heads, t, channels), wv.transpose(1, 2))  # B x H x T x d
        values = values + attn.v_proj.bias.reshape(heads, 1, d)
        return attn.out_proj(_merge(values))

    def _image_to_token(
        self, attn: Any, keys: Any, key_pe_t: Any, queries: Any, query_pe: Any
    ) -> tuple[Any, Any]:
        """Attention weights (B x HT x N) and values (B x H x T x d), in low-rank form.

        Of ``attn(q=keys + key_pe, k=queries + query_pe, v=queries)``. The weights are laid out
        with the image tokens innermost, so that the softmax over each head's ``T`` tokens runs
        along long contiguous rows (a softmax over rows of 7 is many times slower on a CPU).
        """
        torch = self.torch
        heads, (out_dim, channels) = attn.num_heads, attn.q_proj.weight.shape
        d = out_dim // heads
        k = _heads(attn.k_proj(queries + query_pe), heads) * (1.0 / math.sqrt(d))  # B x H x T x d
        v = _heads(attn.v_proj(queries), heads)
        wq = attn.q_proj.weight.reshape(heads, d, channels)
        k_wide = torch.matmul(k, wq).flatten(1, 2).to(self.dtype)  # B x HT x C
        bias = (
            torch.matmul(k, attn.q_proj.bias.reshape(heads, d, 1)).flatten(1, 2).to(self.dtype)
        )  # B x HT x 1
        b, t = k.shape[0], k.shape[2]
        scores = self._with_pe(k_wide, keys, key_pe_t, bias)  # B x HT x N
        weights = torch.softmax(scores.reshape(b, heads, t, -1), dim=2)
        return weights.flatten(1, 2), v

    def _image_out(self, attn: Any, residual: Any, weights: Any, v: Any) -> Any:
        """``residual + out_proj(merge(weights @ v))``, B x N x C, as ``residual + weights^T @ U``.

        ``weights`` is B x HT x N. ``U_h = v_h W_o,h^T + b_o / H``: the bias is spread over the
        heads, each of whose weights sum to one.
        """
        torch = self.torch
        heads, d = v.shape[1], v.shape[-1]
        wo = attn.out_proj.weight  # C x (H d)
        wo_heads = wo.reshape(wo.shape[0], heads, d).permute(1, 2, 0)  # H x d x C
        u = (
            (torch.matmul(v, wo_heads) + attn.out_proj.bias / heads).flatten(1, 2).to(self.dtype)
        )  # B x HT x C
        if residual.dim() == 2:
            residual = residual.expand(weights.shape[0], -1, -1)
        return torch.baddbmm(residual, weights.transpose(1, 2), u)

    def _masks(self, queries: Any, keys: Any, wanted: range, visible: tuple[int, int] | None) -> Any:
        """Upscaling and hypernetwork products for the mask tokens ``wanted``: B x M x 4h x 4w.

        With ``visible = (rows, cols)``: only those top-left tokens, B x M x 4 rows x 4 cols.
        """
        torch = self.torch
        decoder = self.decoder
        c, h, w = self._image["shape"]
        b, m = queries.shape[0], len(wanted)
        rows, cols = (h, w) if visible is None else visible
        hyper = torch.stack(
            [decoder.output_hypernetworks_mlps[i](queries[:, 1 + i, :]) for i in wanted], dim=1
        )  # B x M x C2
        if b == 0:
            return hyper.new_zeros((0, m, LOGITS_PER_TOKEN * rows, LOGITS_PER_TOKEN * cols))
        if self._upscaling is None:  # not SAM's layout: its own modules, in fp32, then cropped
            upscaled = decoder.output_upscaling(keys.float().transpose(1, 2).reshape(b, c, h, w))
            _, c2, h2, w2 = upscaled.shape
            masks = torch.bmm(hyper, upscaled.reshape(b, c2, h2 * w2)).reshape(b, m, h2, w2)
            return masks[:, :, : rows * (h2 // h), : cols * (w2 // w)]
        if (rows, cols) != (h, w):  # upscaling is per token: the other tokens' logits are not read
            keys = keys.reshape(b, h, w, -1)[:, :rows, :cols].reshape(b, rows * cols, -1)
            h, w = rows, cols
        up1, norm, act1, up2, act2 = self._upscaling
        # each 2 x 2 stride-2 transposed convolution is a per-pixel linear map C -> 4 x C'
        x = self._linear(keys, up1)  # B x N x (2 x 2 x C1)
        shape, weight, bias, eps = norm
        x = torch.nn.functional.layer_norm(
            x.reshape(*x.shape[:-1], 4, -1), shape, self._low(weight), self._low(bias), eps
        )
        x = act2(self._linear(act1(x), up2))  # B x N x 4 x (2 x 2 x C2)
        masks = torch.bmm(
            x.reshape(b, -1, x.shape[-1] // 4), hyper.transpose(1, 2).to(self.dtype)
        )  # B x 16N x M
        masks = masks.reshape(b, h, w, 2, 2, 2, 2, m).permute(0, 7, 1, 3, 5, 2, 4, 6).float()
        return masks.reshape(b, m, LOGITS_PER_TOKEN * h, LOGITS_PER_TOKEN * w)

    def _norm(self, norm: Any, x: Any) -> Any:
        """``norm`` (an ``nn.LayerNorm``) applied in the working dtype."""
        return self.torch.nn.functional.layer_norm(
            x, norm.normalized_shape, self._low(norm.weight), self._low(norm.bias), norm.eps
        )

    def _linear(self, x: Any, weight_bias: tuple[Any, Any]) -> Any:
        weight, bias = weight_bias
        return self.torch.nn.functional.linear(x, self._low(weight), self._low(bias))

    def _low(self, param: Any) -> Any:
        """A parameter in the working dtype, converted once."""
        if param is None or param.dtype == self.dtype:
            return param
        key = id(param)
        if key not in self._cast:
            self._cast[key] = param.detach().to(self.dtype)
        return self._cast[key]


def _upscaling_as_linear(sequence: Any) -> tuple | None:
    """SAM's ``output_upscaling`` (ConvT 2x2/2, LayerNorm2d, act, ConvT 2x2/2, act) as per-pixel maps.

    Returns ``((W1, b1), (norm shape, weight, bias, eps), act1, (W2, b2), act2)`` with each ``W``
    of shape ``4 C' x C`` ordered ``(i, j, c')`` for output pixel ``(2y + i, 2x + j)``, or
    ``None`` for any other layout.
    """
    import torch

    modules = list(sequence)
    if len(modules) != 5:
        return None
    up1, norm, act1, up2, act2 = modules
    for conv in (up1, up2):
        if not (
            isinstance(conv, torch.nn.ConvTranspose2d)
            and tuple(conv.kernel_size) == (2, 2)
            and tuple(conv.stride) == (2, 2)
            and tuple(conv.padding) == (0, 0)
            and tuple(conv.output_padding) == (0, 0)
            and conv.groups == 1
            and tuple(conv.dilation) == (1, 1)
            and conv.bias is not None
        ):
            return None
    if not all(hasattr(norm, name) for name in ("weight", "bias", "eps")) or norm.weight.dim() != 1:
        return None

    def as_linear(conv: Any) -> tuple[Any, Any]:
        weight = conv.weight.detach()  # C_in x C_out x 2 x 2
        c_in, c_out = weight.shape[:2]
        matrix = weight.permute(2, 3, 1, 0).reshape(4 * c_out, c_in).contiguous()
        return matrix, conv.bias.detach().repeat(4)

    norm_args = ((norm.weight.shape[0],), norm.weight.detach(), norm.bias.detach(), float(norm.eps))
    return as_linear(up1), norm_args, act1, as_linear(up2), act2


def resize_logits(
    low_res: Any,
    model_size: int,
    input_size: tuple[int, int],
    image_size: tuple[int, int],
    low_size: tuple[int, int] | None = None,
) -> Any:
    """Low-resolution mask logits to the image size, as SAM's ``postprocess_masks`` computes them.

    SAM upsamples ``K x h x w`` logits bilinearly to the model's square input (``model_size``),
    crops the resized image's part (``input_size``) and resamples that bilinearly to
    ``image_size``: two full-size float images per mask, in memory-bound passes. Both passes are
    separable linear maps, so the whole is ``R_y @ L @ R_x^T`` with ``R = A_2 A_1`` per axis
    (``A_1``: low-res -> model input, ``A_2``: crop -> image, each with
    ``torch.nn.functional.interpolate``'s mapping: half-pixel centres, negative positions clamped
    to 0). ``R`` is banded (an output row reads a few neighbouring low-resolution rows), so the
    products run on blocks of output rows against the band they read. Same values up to float
    rounding.

    Args:
        low_res: ``K x h' x w'`` logits: the top-left ``h' x w'`` of the ``low_size`` logits,
            holding at least the rows and columns the crop reads (:func:`visible_tokens`).
        model_size: the model's input side (``image_encoder.img_size``, 1024 for SAM).
        input_size: ``(height, width)`` of the resized image inside the model input.
        image_size: ``(H, W)`` of the image.
        low_size: ``(h, w)`` of the decoder's whole low-resolution output (``(256, 256)`` for
            SAM); None: ``low_res`` is whole.

    Returns:
        ``K x H x W`` fp32 logits.

    Raises:
        ValueError: when ``low_res`` lacks rows or columns the crop reads.
    """
    _, h, w = low_res.shape
    full_h, full_w = (h, w) if low_size is None else low_size
    device = str(low_res.device)
    rows = _resize_bands(image_size[0], input_size[0], model_size, full_h, h, "rows", device)
    cols = _resize_bands(image_size[1], input_size[1], model_size, full_w, w, "columns", device)
    low = low_res.float()
    wide = low.new_empty((low.shape[0], h, image_size[1]))
    for start, stop, lo, hi, block in cols:  # K x h x w -> K x h x W
        wide[:, :, start:stop] = low[:, :, lo:hi] @ block.T
    out = low.new_empty((low.shape[0], image_size[0], image_size[1]))
    for start, stop, lo, hi, block in rows:  # K x h x W -> K x H x W
        out[:, start:stop] = block @ wide[:, lo:hi]
    return out


def visible_tokens(model_size: int, input_size: tuple[int, int], grid: tuple[int, int]) -> tuple[int, int]:
    """Rows and columns of the decoder's token grid whose logits SAM's postprocessing reads.

    The image fills the top-left ``input_size`` of SAM's padded square input; the crop reads
    low-resolution logits (:data:`LOGITS_PER_TOKEN` squared per token) up to the last row / column
    its bilinear pass touches (:func:`resize_logits`).

    Args:
        model_size: the model's input side (1024 for SAM).
        input_size: ``(height, width)`` of the resized image inside the model input.
        grid: ``(h, w)`` of the token grid (64 x 64 for SAM).

    Returns:
        ``(rows, cols)``, each at least 1 and at most the grid's.
    """
    out = []
    for cropped, tokens in zip(input_size, grid, strict=True):
        low = LOGITS_PER_TOKEN * tokens
        read = int(_bilinear(model_size, low)[:cropped].abs().sum(dim=0).nonzero().max()) + 1
        out.append(min(tokens, max(1, -(-read // LOGITS_PER_TOKEN))))
    return out[0], out[1]


_BAND = 64  # output rows per block of the banded resize


@functools.lru_cache(maxsize=32)
def _resize_bands(
    out: int, cropped: int, model_size: int, low: int, present: int, axis: str, device: str
) -> tuple:
    """``R`` (``out x low``: bilinear low -> model_size, crop, bilinear -> out) in row blocks.

    Returns ``(start, stop, lo, hi, R[start:stop, lo:hi])`` per block of ``_BAND`` output rows,
    ``[lo, hi)`` being the low-resolution rows the block reads, all below ``present``; the
    blocks live on ``device``. ``axis`` names the axis in the error.
    """
    first_pass = _bilinear(model_size, low)[:cropped]  # cropped x low
    second_pass = _bilinear(out, cropped)  # out x cropped
    matrix = (second_pass @ first_pass).float()
    blocks = []
    for start in range(0, out, _BAND):
        stop = min(out, start + _BAND)
        used = matrix[start:stop].abs().sum(dim=0).nonzero()
        lo, hi = (int(used.min()), int(used.max()) + 1) if len(used) else (0, 1)
        if hi > present:
            raise ValueError(
                f"the resize reads low-resolution {axis} up to {hi - 1}, past the {present} given"
            )
        blocks.append((start, stop, lo, hi, matrix[start:stop, lo:hi].contiguous().to(device)))
    return tuple(blocks)


def _bilinear(n_out: int, n_in: int) -> Any:
    """``n_out x n_in`` float64: ``interpolate(mode="bilinear", align_corners=False)`` on one axis."""
    import torch

    dst = torch.arange(n_out, dtype=torch.float64)
    pos = ((dst + 0.5) * (n_in / n_out) - 0.5).clamp(min=0.0)
    first = pos.floor().long().clamp(max=n_in - 1)
    second = (first + 1).clamp(max=n_in - 1)
    weight = pos - first
    matrix = torch.zeros((n_out, n_in), dtype=torch.float64)
    rows = torch.arange(n_out)
    matrix.index_put_((rows, first), 1.0 - weight, accumulate=True)
    matrix.index_put_((rows, second), weight, accumulate=True)
    return matrix


def _heads(x: Any, heads: int) -> Any:
    """``... x T x (H d)`` -> ``... x H x T x d``."""
    *lead, t, c = x.shape
    return x.reshape(*lead, t, heads, c // heads).transpose(-3, -2)


def _merge(x: Any) -> Any:
    """``... x H x T x d`` -> ``... x T x (H d)``."""
    x = x.transpose(-3, -2)
    return x.reshape(*x.shape[:-2], -1)
