"""Request bodies as the openai SDK sends them. Unknown fields are refused, so a typo is a 400
naming the parameter instead of a silently ignored setting."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Auto = Literal["auto"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Hyperparameters(Strict):
    n_epochs: Auto | Annotated[int, Field(gt=0, le=1000)] | None = None
    batch_size: Auto | Annotated[int, Field(gt=0, le=4096)] | None = None
    learning_rate_multiplier: Auto | Annotated[float, Field(gt=0, le=100)] | None = None


class DpoHyperparameters(Hyperparameters):
    beta: Auto | Annotated[float, Field(gt=0, le=10)] | None = None


class Supervised(Strict):
    hyperparameters: Hyperparameters | None = None


class Dpo(Strict):
    hyperparameters: DpoHyperparameters | None = None


class Method(Strict):
    type: Literal["supervised", "dpo"]
    supervised: Supervised | None = None
    dpo: Dpo | None = None


class Wandb(Strict):
    project: str = Field(max_length=128, pattern=r"^[-_.A-Za-z0-9]+$")
    name: str | None = Field(default=None, max_length=128)
    entity: str | None = Field(default=None, max_length=128)
    tags: list[str] = Field(default_factory=list)


class Integration(Strict):
    type: Literal["wandb"]
    wandb: Wandb


class JobCreate(Strict):
    model: str = Field(min_length=1, max_length=128)
    training_file: str = Field(min_length=1, max_length=64)
    validation_file: str | None = Field(default=None, max_length=64)
    hyperparameters: Hyperparameters | None = None
    method: Method | None = None
    seed: int | None = Field(default=None, ge=0, le=2**31 - 1)
    suffix: str | None = Field(default=None, max_length=64, pattern=r"^[-_A-Za-z0-9]*$")
    integrations: list[Integration] | None = Field(default=None, max_length=1)
    metadata: dict[str, str] | None = Field(default=None, max_length=16)

    @model_validator(mode="after")
    def _one_place_for_hyperparameters(self) -> JobCreate:
        if self.hyperparameters is not None and self.method is not None:
            raise ValueError("give hyperparameters under method, not both at the top level and in method")
        return self

    def method_type(self) -> str:
        return self.method.type if self.method else "supervised"

    def effective_hyperparameters(self) -> Hyperparameters:
        if self.method is None:
            return self.hyperparameters or Hyperparameters()
        inner = self.method.dpo if self.method.type == "dpo" else self.method.supervised
        hp = inner.hyperparameters if inner else None
        return hp or (DpoHyperparameters() if self.method.type == "dpo" else Hyperparameters())


class TextPart(Strict):
    type: Literal["text"]
    text: str


class ChatMessage(Strict):
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart]
    name: str | None = Field(default=None, max_length=64)

    def as_llama(self) -> dict[str, str]:
        # llama.cpp's chat templates know system, not OpenAI's newer name for it
        text = self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)
        return {"role": "system" if self.role == "developer" else self.role, "content": text}


class ChatCompletionCreate(Strict):
    """The chat completion parameters llama.cpp honours; any other is a 400 naming it."""

    model: str = Field(min_length=1, max_length=256)
    messages: list[ChatMessage] = Field(min_length=1, max_length=1024)
    temperature: Annotated[float, Field(ge=0, le=2)] | None = None
    top_p: Annotated[float, Field(gt=0, le=1)] | None = None
    max_tokens: Annotated[int, Field(gt=0, le=32_768)] | None = None
    max_completion_tokens: Annotated[int, Field(gt=0, le=32_768)] | None = None
    stop: str | Annotated[list[str], Field(max_length=4)] | None = None
    seed: int | None = None
    n: Literal[1] | None = None
    presence_penalty: Annotated[float, Field(ge=-2, le=2)] | None = None
    frequency_penalty: Annotated[float, Field(ge=-2, le=2)] | None = None
    stream: bool = False
    user: str | None = Field(default=None, max_length=256)

    def llama_options(self) -> dict:
        """Keyword arguments of llama_cpp.Llama.create_chat_completion."""
        options = {"max_tokens": self.max_completion_tokens or self.max_tokens or 256}
        for name in ("temperature", "top_p", "stop", "seed", "presence_penalty", "frequency_penalty"):
            value = getattr(self, name)
            if value is not None:
                options[name] = value
        return options
