"""Realtime endpoint of docs_factory: ``get_inference_service`` returns a handler whose only
method is ``async predict(request)``."""

import asyncio


class LengthHandler:
    def __init__(self, scale):
        self.scale = scale

    async def predict(self, request):
        await asyncio.sleep(0)
        return {
            "length": len(request.get("text", "")) * self.scale,
            "style": "factory_async_predict",
        }


def get_inference_service(**kwargs):
    return LengthHandler(scale=2)
