# SPDX-License-Identifier: MIT
defmodule MobBus do
  @moduledoc """
  The mobbus event bus from Elixir: a thin wrapper over the Erlang module
  `:mobbus` (see `bridges/beam/mobbus.erl` for the messages and options).

      :ok = MobBus.start(db: "/data/app/mobbus.db", platform: :ios, ack: :manual)
      :ok = MobBus.subscribe()

      def handle_info({:notification, %{id: id, data: data}}, socket) do
        MobBus.ack(id)
        ...
      end

  Subscribers receive exactly the messages Mob screens receive:
  `{:notification, map}`, `{:push_token, :ios | :android, token}`,
  `{:mob_device, event}`, `{:mob_device, :connectivity_changed, map}`,
  `{:push_fired, id, push_id, payload_json}`, `{:wake_fired, id}`, plus
  `{:conn, name, :up | :down}` and `{:keep_alive, :ok | {:refused, reason}}`.

  Wrong arguments raise `ArgumentError` (badarg); run-time failures return
  `{:error, reason}`.
  """

  @type kind ::
          :all | :notification | :push_fired | :push_token | :mob_device
          | :wake_fired | :conn | :keep_alive | :mobbus_error | :mobbus_effect

  @doc "Open the bus: `db:`, `platform:`, `ack:`, `android_sdk:`, `background_modes:`, `delivery_info:`."
  @spec start(keyword() | map()) :: :ok | {:error, term()}
  def start(opts \\ []), do: :mobbus.start(to_map(opts))

  @spec stop() :: :ok | {:error, :not_started}
  def stop, do: :mobbus.stop()

  @doc "Subscribe `pid` (default: the caller) to `kinds` (default: every Mob message)."
  @spec subscribe(pid(), kind() | [kind()]) :: :ok | {:error, term()}
  def subscribe(pid \\ self(), kinds \\ :all), do: :mobbus.subscribe(pid, kinds)

  @spec unsubscribe(pid()) :: :ok | {:error, term()}
  def unsubscribe(pid \\ self()), do: :mobbus.unsubscribe(pid)

  @doc "Acknowledge a notification id, or `{:push_token, token}`."
  @spec ack(binary() | {:push_token, binary()}) :: :ok | {:error, term()}
  def ack(id), do: :mobbus.ack(id)

  @doc "Complete a fetch window or task: `id` or `{:push_id, push_id}`."
  @spec complete(binary() | {:push_id, binary()}, :new_data | :no_data | :failed) ::
          :ok | {:error, term()}
  def complete(id, result), do: :mobbus.complete(id, result)

  @spec keep_alive() :: :ok | {:error, term()}
  def keep_alive, do: :mobbus.keep_alive()

  @spec keep_alive_stop() :: :ok | {:error, term()}
  def keep_alive_stop, do: :mobbus.keep_alive_stop()

  @doc "A socket the bus keeps open while the app may use the network."
  @spec connect(String.t(), String.t()) :: :ok | {:error, term()}
  def connect(name, url), do: :mobbus.connect(name, url)

  @doc "Publish a platform moment as a native bridge would (see `:mobbus.publish/2`)."
  @spec publish(atom(), keyword() | map()) :: :ok | {:error, term()}
  def publish(kind, fields), do: :mobbus.publish(kind, to_map(fields))

  @spec state_get(binary()) :: {:ok, binary()} | {:error, term()}
  def state_get(key), do: :mobbus.state_get(key)

  @spec state_put(binary(), iodata()) :: :ok | {:error, term()}
  def state_put(key, value), do: :mobbus.state_put(key, value)

  @spec state_delete(binary()) :: :ok | {:error, term()}
  def state_delete(key), do: :mobbus.state_delete(key)

  @doc "Return once every message caused so far is in the caller's mailbox."
  @spec sync(non_neg_integer()) :: :ok | {:error, term()}
  def sync(timeout \\ 5000), do: :mobbus.sync(timeout)

  defp to_map(m) when is_map(m), do: m
  defp to_map(l) when is_list(l), do: Map.new(l)
  defp to_map(other), do: :erlang.error(:badarg, [other])
end
